//go:build unix

package websocket

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// peerGone reports whether a write failed because the peer has closed or
// reset the connection.
func peerGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// canReadWhenReady says that readWhenReady works here.
const canReadWhenReady = true

// readWhenReady reads from the socket without holding a buffer while it
// waits: the runtime's poller calls back once the socket is readable, and
// only then is a large buffer taken from the pool and filled, with one
// system call. An idle connection therefore costs no buffer, and a message
// that arrives costs one read however large it is (up to the buffer).
// b must be empty.
func (b *readBuffer) readWhenReady() error { return b.readRaw(true) }

// readNow reads what the socket has without waiting, as readWhenReady
// does, and returns errWouldBlock if it has nothing.
func (b *readBuffer) readNow() error { return b.readRaw(false) }

// readFrameEnd reads into p, which takes the rest of the current frame's
// payload, and buffers what follows the frame, as readWhenReady does, with
// one system call where the system allows (see readInto). It returns how
// many bytes went into p. b must be empty.
func (b *readBuffer) readFrameEnd(p []byte) (int, error) {
	b.front = p
	err := b.readRaw(true)
	n := b.frontN
	b.front, b.frontN = nil, 0
	return n, err
}

func (b *readBuffer) readRaw(wait bool) error {
	if b.rawRead == nil {
		// Made once: a closure made per read would be allocated per read.
		b.rawRead = func(fd uintptr) bool {
			big := b.big
			if big == nil {
				big = readBuffers.Get().(*[]byte)
			}
			n, err := readInto(fd, b.front, *big)
			if err == syscall.EAGAIN {
				// Not readable after all: wait, holding no buffer
				// that was not held before, or report it.
				if b.big == nil {
					readBuffers.Put(big)
				}
				b.rawErr = err
				return b.noWait
			}
			n = max(n, 0)
			b.frontN = min(n, len(b.front))
			b.big, b.buf, b.r, b.w, b.rawErr = big, *big, 0, n-b.frontN, err
			return true
		}
	}
	b.noWait = !wait
	err := b.raw.Read(b.rawRead)
	if err == nil && b.rawErr == syscall.EAGAIN {
		b.rawErr = nil
		return errWouldBlock
	}
	if err == nil && b.rawErr != nil {
		err = os.NewSyscallError("read", b.rawErr)
	}
	b.rawErr = nil
	if err == nil && b.w == 0 && b.frontN == 0 {
		err = io.EOF
	}
	if err != nil {
		// The poller's own errors (a deadline, a closed socket) or the
		// read's.
		b.release()
	}
	return err
}

// nonblockingWriter returns a function that writes to raw's socket with one
// system call that does not wait: it returns (0, nil) when the socket's send
// buffer is full. See coalesce.go.
func nonblockingWriter(raw syscall.RawConn) func([]byte) (int, error) {
	var p []byte
	var n int
	var errno error
	write := func(fd uintptr) bool {
		for {
			n, errno = syscall.Write(int(fd), p)
			if errno != syscall.EINTR {
				break
			}
		}
		return true // done either way: never wait for the socket
	}
	return func(b []byte) (int, error) {
		p = b
		err := raw.Write(write)
		p = nil
		if err == nil && errno != nil && errno != syscall.EAGAIN {
			err = os.NewSyscallError("write", errno)
		}
		if err != nil || n < 0 {
			return 0, err
		}
		return n, nil
	}
}
