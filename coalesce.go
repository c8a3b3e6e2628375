package websocket

import (
	"context"
	"time"
)

// This file holds write coalescing: frames written while the reader still
// has input buffered are held back briefly and sent together.
//
// A server answering pipelined requests reads many messages with one system
// call and, without this, spends one write system call on each answer; on
// loopback that call is most of the cost of a small message. While the read
// buffer holds more input, the application is about to get its next message
// without waiting, so an answer written now can go out with the next ones.
// The held frames are sent, in order and before anything else:
//
//   - by the next write that cannot be held (too large, a Close frame, or
//     written when no input is buffered), together with that frame;
//   - by the reader, without blocking, when it runs out of buffered input
//     and is about to wait for more;
//   - at the latest holdDelay after the first of them, by a timer, for an
//     application that stops reading for a while after it wrote.
//
// Frames are held only on a plain TCP connection on Unix, where the reader
// can write without blocking (see netio_unix.go).

// holdDelay bounds how long a written frame may wait for company.
const holdDelay = time.Millisecond

// heldFrames is the buffer of frames written but not yet sent. It belongs to
// the holder of the Conn's frameLock, except for the batching flag.
type heldFrames struct {
	buf   *[]byte     // pooled; nil while nothing is held
	timer *time.Timer // sends what is held after holdDelay

	// write writes without blocking, returning (0, nil) if the socket's
	// buffer is full; see netio_unix.go. Made with the first held frame.
	write func([]byte) (int, error)
}

// noteBuffered records, at the end of a message, whether more input is
// already buffered: if so, writes until the reader waits again are held.
func (c *Conn) noteBuffered() {
	if c.in.raw != nil && c.in.buffered() > 0 && !c.batching.Load() {
		c.batching.Store(true)
	}
}

// hold appends the frame to the held frames if it fits, and reports whether
// it did. The caller holds frameLock and has set h's length and mask.
func (c *Conn) hold(h Header, payload, wire []byte) bool {
	size := len(wire) // or at most this for a frame to encode:
	if wire == nil {
		size = MaxHeaderLen + len(payload)
	}
	if c.held.buf == nil {
		if size > writeBufferSize {
			return false
		}
		c.held.buf = writeBuffers.Get().(*[]byte)
		*c.held.buf = (*c.held.buf)[:0]
		if c.held.timer == nil {
			c.held.write = nonblockingWriter(c.in.raw)
			c.held.timer = time.AfterFunc(holdDelay, c.sendHeldLater)
		} else {
			c.held.timer.Reset(holdDelay)
		}
	}
	b := *c.held.buf
	if len(b)+size > cap(b) {
		return false
	}
	if wire != nil {
		b = append(b, wire...)
	} else {
		b = AppendHeader(b, h)
		start := len(b)
		b = append(b, payload...)
		if h.Masked {
			maskWords(b[start:], leUint32(h.MaskKey))
		}
	}
	*c.held.buf = b
	return true
}

// sendHeld writes the held frames, blocking, under frameLock. It returns
// how many bytes it wrote; once all are written the buffer goes back to the
// pool. On an error the rest stays held.
func (c *Conn) sendHeld() (int, error) {
	b := *c.held.buf
	n, err := c.nc.Write(b)
	c.dropHeld(n)
	return n, err
}

// dropHeld forgets the first n held bytes, which were sent.
func (c *Conn) dropHeld(n int) {
	b := *c.held.buf
	if n < len(b) {
		*c.held.buf = b[:copy(b, b[n:])]
		return
	}
	c.held.timer.Stop()
	writeBuffers.Put(c.held.buf)
	c.held.buf = nil
}

// sendHeldNow writes what it can of the held frames without blocking, for
// the reader before it waits and for teardown. What is left is sent by the
// timer or the next write. The caller holds frameLock.
func (c *Conn) sendHeldNow() error {
	if c.held.buf == nil || c.writeErr.Load() != nil {
		return nil
	}
	n, err := c.held.write(*c.held.buf)
	if n > 0 {
		c.dropHeld(n)
	}
	return err
}

// sendBeforeWait is called by the reader when it is about to wait for
// input: the application has had every message buffered, so whatever it
// wrote in answer goes out now. If a writer has the lock, it or the timer
// sends them.
func (c *Conn) sendBeforeWait() {
	if !c.batching.Load() {
		return
	}
	c.batching.Store(false)
	if !c.frameLock.tryLock() {
		return
	}
	defer c.frameLock.unlock()
	if err := c.sendHeldNow(); err != nil {
		c.failWrites("could not send messages written earlier", err)
	}
}

// sendHeldLater runs on the timer: the application has not come back to
// read within holdDelay, so writes stop being held until it does, and what
// is held is sent, blocking as long as the caller's write deadline allows.
func (c *Conn) sendHeldLater() {
	c.batching.Store(false)
	if err := c.frameLock.lock(context.Background(), c.closed); err != nil {
		return
	}
	defer c.frameLock.unlock()
	if c.held.buf == nil || c.writeErr.Load() != nil {
		return
	}
	c.writeDeadline.beginUser()
	n, err := c.sendHeld()
	c.writeDeadline.end()
	if err != nil && (n > 0 || !isTimeout(err)) {
		c.failWrites("could not send messages written earlier", err)
	}
	// A timeout with nothing sent leaves the frames to the next write.
}
