// Package websocket implements the WebSocket protocol (RFC 6455), with
// permessage-deflate compression (RFC 7692), for servers and clients.
//
// A server upgrades an HTTP request with [Accept]:
//
//	http.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
//		c, err := websocket.Accept(w, r, nil)
//		if err != nil {
//			return // Accept has answered the request with an HTTP error.
//		}
//		defer c.CloseNow()
//		for {
//			typ, msg, err := c.Read(r.Context())
//			if err != nil {
//				return
//			}
//			if err := c.Write(r.Context(), typ, msg); err != nil {
//				return
//			}
//		}
//	})
//
// The handler may instead return as soon as Accept succeeds and leave the
// connection to a goroutine of its own, with a context of its own, since the
// request's ends with the handler: net/http then frees the request, the
// response and its buffers, about 11 KiB per connection (see
// Example_returnFromHandler). Over HTTP/2 the handler must keep running.
// [Conn.AwaitMessage] goes further for servers with very many idle
// connections: it calls a function once a message arrives, and no goroutine
// waits meanwhile. And a port that serves only WebSockets can answer its
// requests with [Serve] instead of net/http, with the same handlers, for
// cheaper opening handshakes.
//
// A client connects with [Dial]:
//
//	c, _, err := websocket.Dial(ctx, "ws://127.0.0.1:8080/echo", nil)
//	if err != nil {
//		return err
//	}
//	defer c.CloseNow()
//	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
//		return err
//	}
//	_, reply, err := c.Read(ctx)
//	...
//	return c.Close(websocket.StatusNormalClosure, "done")
//
// Start with [Conn]: [Conn.Read] and [Conn.Write] move whole messages,
// [Conn.Reader] and [Conn.Writer] stream them. The frame codec underneath
// ([Header], [DecodeHeader], [AppendHeader], [Mask]) is exported for callers
// who run their own event loops.
//
// # Concurrency
//
// One goroutine may read at a time, and any number may write at once: whole
// messages from concurrent writers never interleave, while pings, pongs and
// the Close frame may be sent between the fragments of a streamed message
// (§5.4). [Conn.Close], [Conn.CloseNow] and [Conn.Ping] are safe from any
// goroutine.
//
// You must keep reading: pings are answered, pongs delivered and the peer's
// Close frame seen only while a goroutine reads. An application that only
// writes should still run a loop that reads and discards. When a write
// fails because the peer has closed the connection (on Unix, where the
// error says so), what the peer sent before, its Close frame among it, is
// still read; the read that reaches its end closes the connection.
//
// # Contexts and deadlines
//
// Every blocking call takes a [context.Context]. A context that is done while
// a call waits for the next message, or for its turn to write, ends that call
// and leaves the connection usable. Reads never corrupt the connection: a
// read cut short mid-message leaves the rest of that message to be skipped
// by the next [Conn.Reader] or [Conn.Read]. A write cut short mid-frame has
// sent a partial frame, so the connection is closed.
//
// # HTTP/2
//
// A server can also carry WebSockets over HTTP/2 (RFC 8441), where each
// WebSocket is a stream of a TLS connection the browser already has. Go's
// net/http supports it when the environment variable GODEBUG contains
// http2xconnect=1 as the process starts (for example
// GODEBUG=http2xconnect=1 ./server); the server must serve TLS with HTTP/2,
// as [http.Server.ListenAndServeTLS] does by default. [Accept] then serves
// both kinds of request and the Conn behaves the same, with two
// differences: the handler must not return while the Conn is in use, and a
// write that times out mid-way ends the connection even when nothing was
// sent. Once the server advertises the setting, browsers open every wss://
// WebSocket to it over HTTP/2, so every WebSocket handler on that server
// must use Accept (or another library that speaks RFC 8441). [Dial] speaks
// HTTP/1.1 only: net/http's client cannot send extended CONNECT.
//
// # Closing
//
// [Conn.Close] performs the closing handshake; [Conn.CloseNow] just closes the
// TCP connection. When the peer closes, reads return a [CloseError]; when the
// connection fails, reads return an error for which [CloseStatus] tells the
// status (1002 for a protocol violation, 1006 for a broken connection …).
package websocket

import (
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// MessageType is the type of a data message: text or binary (§5.6).
type MessageType int

// The data message types.
const (
	MessageText   MessageType = MessageType(OpText)
	MessageBinary MessageType = MessageType(OpBinary)
)

func (t MessageType) String() string {
	switch t {
	case MessageText:
		return "text"
	case MessageBinary:
		return "binary"
	}
	return fmt.Sprintf("MessageType(%d)", int(t))
}

// DefaultReadLimit is the largest message a connection accepts unless
// [Conn.SetReadLimit] says otherwise: 1 MiB. A larger message fails the
// connection with status 1009 (message too big).
const DefaultReadLimit = 1 << 20

// DefaultFragmentLimit is the most frames a message may arrive in unless
// [Conn.SetFragmentLimit] says otherwise. A message in more frames fails the
// connection with status 1008 (policy violation).
const DefaultFragmentLimit = 1 << 16

// Conn is a WebSocket connection, from [Accept] on a server or [Dial] on a
// client. See the package documentation for which methods may be called
// concurrently, how contexts apply and how a connection closes.
//
// An idle Conn holds no read or write buffer: buffers are taken from shared
// pools while a message is in flight and returned after.
type Conn struct {
	// The small fields are grouped where they need no padding: see
	// TestConnFitsItsSizeClass.
	nc          net.Conn
	server      bool
	pongOwed    bool // owedPong waits to be sent (sendPong); the reader's, as rd is
	closeSent   bool // guarded by frameLock
	subprotocol string
	ext         extensions
	flate       *flateState // nil unless permessage-deflate was negotiated
	noCompress  atomic.Bool
	batching    atomic.Bool // the reader has input buffered: hold small frames (coalesce.go)

	// The read side. readLock admits one reader at a time; rd, in and the
	// message reader belong to its holder.
	readLock     chanLock
	readDeadline deadline
	in           readBuffer
	rd           readState
	owedPong     []byte // see pongOwed
	reader       messageReader
	readLimit    atomic.Int64
	fragLimit    atomic.Int64
	readLost     atomic.Pointer[connError] // how reading failed, when the network failed it

	// The write side. msgLock is held for a whole message, frameLock for
	// one frame, so that control frames can go between fragments.
	msgLock       chanLock
	frameLock     chanLock
	writeDeadline deadline
	writeErr      atomic.Pointer[connError]  // why writing ended, when a write failed
	orphaned      atomic.Pointer[time.Timer] // closes the connection should nobody read after the peer left (failWrites)
	writer        messageWriter
	iov           [2][]byte   // header and payload of a frame written in place
	iovBufs       net.Buffers // iov as net.Buffers; a field, so WriteTo's pointer does not escape
	held          heldFrames  // frames written, not yet sent; guarded by frameLock (coalesce.go)

	keepAlive keepAlive
	await     atomic.Pointer[awaitState] // made by the first AwaitMessage (await.go)

	// afterClose, when set, runs once the TCP connection has closed; a
	// [Group] uses it to forget the connection.
	afterClose atomic.Pointer[func()]

	onPing, onPong func(payload []byte)
	onClose        func(code StatusCode, reason string)

	pingMu  sync.Mutex
	pingSeq uint64
	pings   map[uint64]chan struct{}

	closing           atomic.Bool // Close has been called
	closeOnce         sync.Once
	closed            chan struct{} // closed with the TCP connection
	closeReceivedOnce sync.Once
	closeReceived     chan struct{} // closed when the peer's Close frame arrived
}

// readState is where the reader is in the stream of frames.
type readState struct {
	frame      Header // the current data frame
	frameLeft  int64  // unread payload bytes of the current frame
	maskKey    uint32 // the current frame's masking key, rotated to the read position
	inMessage  bool   // a data message has started and is not fully read
	held       bool   // Close read the start of this message and holds it for the application
	msgType    MessageType
	compressed bool  // the current message has RSV1 set (RFC 7692)
	msgBytes   int64 // bytes of the current message delivered so far
	frames     int64 // frames of the current message so far
	utf8       utf8Validator
	err        error // how the read side ended; sticky
}

// newConn makes a Conn on nc, which has completed the opening handshake.
// buffered holds bytes already read from nc past the handshake.
func newConn(nc net.Conn, server bool, buffered []byte, subprotocol string, ext extensions) *Conn {
	c := &Conn{
		nc:            nc,
		server:        server,
		subprotocol:   subprotocol,
		ext:           ext,
		readLock:      newChanLock(),
		msgLock:       newChanLock(),
		frameLock:     newChanLock(),
		closed:        make(chan struct{}),
		closeReceived: make(chan struct{}),
	}
	c.readDeadline.init(nc, false)
	c.writeDeadline.init(nc, true)
	c.in.init(nc, buffered)
	if c.in.raw != nil {
		c.in.owner = c
	}
	if ext.deflate != nil {
		c.flate = &flateState{}
	}
	c.reader.c = c
	c.writer.c = c
	c.readLimit.Store(DefaultReadLimit)
	c.fragLimit.Store(DefaultFragmentLimit)
	return c
}

// Subprotocol returns the subprotocol the opening handshake agreed on, or ""
// if none.
func (c *Conn) Subprotocol() string { return c.subprotocol }

// NetConn returns the underlying connection. Reading from or writing to it
// directly corrupts the WebSocket stream; it is meant for inspection (for
// example a [crypto/tls.Conn]'s state) and socket options.
func (c *Conn) NetConn() net.Conn { return c.nc }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// SetReadLimit sets the largest message, in bytes, that reads accept; a
// larger message fails the connection with status 1009 (message too big).
// For a compressed message the limit applies to its decompressed size. The
// default is [DefaultReadLimit]. It is safe to call at any time; a message
// already being read is held to the limit in force when its frames arrive.
func (c *Conn) SetReadLimit(n int64) { c.readLimit.Store(n) }

// SetFragmentLimit sets the most frames a message may arrive in; a message
// in more fails the connection with status 1008 (policy violation). The
// read limit alone cannot stop a peer that sends a message as an endless
// stream of empty fragments. The default is [DefaultFragmentLimit], which
// allows a message at the default read limit in fragments of 16 bytes.
func (c *Conn) SetFragmentLimit(n int) { c.fragLimit.Store(int64(n)) }

// SetReadDeadline sets an absolute time after which reads fail, as
// [net.Conn.SetReadDeadline] does; the zero time means none. A context
// passed to a read with an earlier deadline takes precedence for that call.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.readDeadline.setUser(t) }

// SetWriteDeadline sets an absolute time after which writes fail, as
// [net.Conn.SetWriteDeadline] does; the zero time means none. A write that
// times out mid-frame closes the connection.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.writeDeadline.setUser(t) }

// OnPing sets a function to call with the payload of every ping that
// arrives, before the pong that answers it is sent (pings are always
// answered). OnPong does the same for pongs, and OnClose for the peer's Close
// frame. They run on the reading goroutine and must not block for long; set
// them before reading starts.
func (c *Conn) OnPing(f func(payload []byte)) { c.onPing = f }

// OnPong sets a function to call with the payload of every pong that
// arrives. See [Conn.OnPing].
func (c *Conn) OnPong(f func(payload []byte)) { c.onPong = f }

// OnClose sets a function to call with the code and reason of the peer's
// Close frame when it arrives, before it is answered. See [Conn.OnPing].
func (c *Conn) OnClose(f func(code StatusCode, reason string)) { c.onClose = f }

// teardown closes the TCP connection, once.
func (c *Conn) teardown() {
	c.closeOnce.Do(func() {
		close(c.closed)
		if c.frameLock.tryLock() {
			// Best effort for frames written before an abrupt close.
			_ = c.sendHeldNow()
			c.frameLock.unlock()
		}
		a := c.await.Load()
		if a != nil {
			a.stop()
		}
		_ = c.nc.Close()
		if a != nil {
			c.wake(a) // an application awaiting a message reads the news
		}
		c.stopKeepAlive()
		c.releaseMemory()
		if t := c.orphaned.Load(); t != nil {
			t.Stop() // a timer holds the Conn
		}
		c.readDeadline.release()
		c.writeDeadline.release()
		if f := c.afterClose.Load(); f != nil {
			(*f)()
		}
	})
}

// Read reads the next data message whole and returns its type and payload
// in a newly allocated slice of the message's size, which is Read's only
// allocation. Memory grows as the message arrives, not by the length the
// peer announces. See [Conn.Reader] for what happens to control frames on
// the way.
func (c *Conn) Read(ctx context.Context) (MessageType, []byte, error) {
	if err := c.readLock.lock(ctx, nil); err != nil {
		return 0, nil, err
	}
	defer c.readLock.unlock()
	c.readDeadline.begin(ctx)
	defer c.readDeadline.end()
	typ, err := c.nextMessage(ctx)
	if err != nil {
		return 0, nil, err
	}
	p, err := c.readWhole(ctx)
	if err != nil {
		return 0, nil, err
	}
	return typ, p, nil
}

// Reader waits for the next data message and returns its type and a reader
// for its payload, which returns [io.EOF] at the message's end. The reader
// is valid until the next call to Reader or Read; a message not read to its
// end is discarded by that call. ctx bounds the wait and every read from the
// returned reader; once it has ended, no frame is taken, even one already
// received, so that every Ping and Close read can be answered.
//
// While it reads, Reader answers pings with pongs (one that waits behind
// another writer for longer than ctx lasts is sent by the next read),
// delivers pongs to [Conn.Ping], and answers the peer's Close frame, after
// which it returns a [CloseError]. A protocol violation by the peer fails
// the connection with the status §7.4.1 prescribes, and Reader returns an
// error saying what the peer did.
func (c *Conn) Reader(ctx context.Context) (MessageType, io.Reader, error) {
	// Waiting for the read lock ignores closure: its holder is doing I/O,
	// which fails promptly once the connection closes.
	if err := c.readLock.lock(ctx, nil); err != nil {
		return 0, nil, err
	}
	defer c.readLock.unlock()
	c.readDeadline.begin(ctx)
	defer c.readDeadline.end()
	typ, err := c.nextMessage(ctx)
	if err != nil {
		return 0, nil, err
	}
	c.reader.ctx = ctx
	return typ, &c.reader, nil
}

// CloseRead starts a goroutine that reads from the connection on behalf of
// an application that only writes, so that pings are answered and the
// peer's Close frame is seen. A data message from the peer fails the
// connection with [StatusPolicyViolation]. The returned context is done
// when the goroutine ends: when the connection closes, or when ctx is done,
// which leaves the connection open and readable again.
func (c *Conn) CloseRead(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		if _, _, err := c.Reader(ctx); err == nil {
			_ = c.Close(StatusPolicyViolation, "this endpoint does not read data messages")
		}
	}()
	return ctx
}

// nextMessage skips what is left of the current message and reads up to the
// first frame of the next one. The caller holds the read lock.
func (c *Conn) nextMessage(ctx context.Context) (MessageType, error) {
	if c.rd.held {
		c.rd.held = false
		return c.rd.msgType, nil
	}
	if c.rd.inMessage {
		if err := c.discardMessage(ctx); err != nil {
			return 0, err
		}
	}
	h, err := c.nextFrame(ctx)
	if err != nil {
		return 0, err
	}
	if h.Opcode == OpContinuation {
		return 0, c.fail(StatusProtocolError, "continuation frame with no message to continue")
	}
	c.rd.inMessage = true
	c.rd.msgType = MessageType(h.Opcode)
	c.rd.compressed = h.Rsv1
	c.rd.msgBytes = 0
	c.rd.frames = 0
	c.rd.utf8 = utf8Validator{}
	if err := c.startFrame(h); err != nil {
		return 0, err
	}
	return c.rd.msgType, nil
}

// nextFrame reads frame headers, handling control frames as they come, and
// returns the header of the next data frame. The caller holds the read lock
// and has read the previous frame's payload.
func (c *Conn) nextFrame(ctx context.Context) (Header, error) {
	for {
		if c.rd.err != nil {
			return Header{}, c.rd.err
		}
		if c.pongOwed {
			c.sendPong(ctx, c.owedPong)
		}
		// A frame already buffered would be read whatever ctx says. One
		// read under a context that has ended could not be answered
		// (§5.5.1, §5.5.2: Ping and Close are), so it stays unread.
		if err := ctx.Err(); err != nil {
			return Header{}, err
		}
		h, err := c.readHeader(ctx)
		if err != nil {
			return Header{}, err
		}
		if !h.Opcode.IsControl() {
			return h, nil
		}
		if err := c.handleControl(ctx, h); err != nil {
			return Header{}, err
		}
	}
}

// readHeader reads and checks the next frame header.
func (c *Conn) readHeader(ctx context.Context) (Header, error) {
	if c.in.buffered() == 0 {
		// Between frames with nothing buffered is where a connection
		// idles: give the read buffer back while we wait.
		c.in.release()
	}
	if err := c.in.fill(2); err != nil {
		return Header{}, c.readError(ctx, err)
	}
	b := c.in.peek()
	if err := c.in.fill(headerLen(b[0], b[1])); err != nil {
		return Header{}, c.readError(ctx, err)
	}
	h, n, err := DecodeHeader(c.in.peek())
	if err != nil {
		return h, c.fail(StatusProtocolError, err.Error())
	}
	c.in.skip(n)
	if err := checkHeader(h, c.server, c.ext.deflate != nil); err != nil {
		return h, c.fail(StatusProtocolError, err.Error())
	}
	return h, nil
}

// handleControl reads the payload of a control frame and acts on it.
func (c *Conn) handleControl(ctx context.Context, h Header) error {
	// A control payload is at most 125 bytes (§5.5), which the read
	// buffer always has room for: it is used where it lies.
	if err := c.in.fill(int(h.Length)); err != nil {
		return c.readError(ctx, err)
	}
	payload := c.in.peek()[:h.Length]
	c.in.skip(int(h.Length))
	if h.Masked {
		Mask(payload, h.MaskKey)
	}
	switch h.Opcode {
	case OpPing:
		if c.onPing != nil {
			c.onPing(payload)
		}
		c.sendPong(ctx, payload)
	case OpPong:
		c.keepAlive.awaiting.Store(false)
		if c.onPong != nil {
			c.onPong(payload)
		}
		c.pongReceived(payload)
	case OpClose:
		return c.handleClose(ctx, payload)
	}
	return nil
}

// sendPong answers a Ping (§5.5.2). A Pong that a deadline stops (the
// read's context ending while another writer's large frame to a slow peer
// holds the write lock, say) is owed instead, and sent before the next
// frame is read: a short read deadline must not cost the peer its answer.
// Only the latest Ping is answered then, as §5.5.3 allows. Any other
// failure to send is the connection's, which the next read reports.
func (c *Conn) sendPong(ctx context.Context, payload []byte) {
	err := c.writeControl(ctx, OpPong, payload)
	// The error, not ctx.Err, says whether a deadline stopped it: a
	// context's deadline can pass a moment before it reports itself done.
	c.pongOwed = err != nil && isTimeout(err)
	if c.pongOwed {
		c.owedPong = append(c.owedPong[:0], payload...) // payload may be owedPong itself
	}
}

// startFrame makes h the current data frame, checking the read and
// fragment limits.
func (c *Conn) startFrame(h Header) error {
	c.rd.frame = h
	c.rd.frameLeft = h.Length
	c.rd.maskKey = leUint32(h.MaskKey)
	c.rd.frames++
	if limit := c.fragLimit.Load(); c.rd.frames > limit {
		return c.fail(StatusPolicyViolation, fmt.Sprintf("message arrives in more than %d frames", limit))
	}
	if !c.rd.compressed {
		if limit := c.readLimit.Load(); c.rd.msgBytes+h.Length > limit {
			return c.fail(StatusMessageTooBig, fmt.Sprintf("message exceeds the read limit of %d bytes", limit))
		}
	}
	return nil
}

// readPayload reads the raw payload of the current message, frame after
// frame, and returns io.EOF after its final frame.
func (c *Conn) readPayload(ctx context.Context, p []byte) (int, error) {
	for c.rd.frameLeft == 0 {
		if c.rd.frame.Fin {
			c.noteBuffered() // for a message that ends with an empty frame
			return 0, io.EOF
		}
		h, err := c.nextFrame(ctx)
		if err != nil {
			return 0, err
		}
		if h.Opcode != OpContinuation {
			return 0, c.fail(StatusProtocolError, fmt.Sprintf("%v frame started a new message before the last one ended", h.Opcode))
		}
		if h.Rsv1 {
			return 0, c.fail(StatusProtocolError, "continuation frame has RSV1 set")
		}
		if err := c.startFrame(h); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > c.rd.frameLeft {
		p = p[:c.rd.frameLeft]
	}
	n, err := c.in.read(p, c.rd.frameLeft)
	if c.rd.frame.Masked {
		c.rd.maskKey = maskWords(p[:n], c.rd.maskKey)
	}
	c.rd.frameLeft -= int64(n)
	if err != nil {
		return n, c.readError(ctx, err)
	}
	if c.rd.frameLeft == 0 && c.rd.frame.Fin {
		c.noteBuffered()
	}
	return n, nil
}

// discardMessage reads and drops the rest of the current message.
func (c *Conn) discardMessage(ctx context.Context) error {
	if c.rd.compressed && c.flate.broken {
		return c.discardCompressed(ctx)
	}
	// A stack array would escape through the io.Reader beneath; a pooled
	// buffer keeps skipping free of allocations.
	bp := writeBuffers.Get().(*[]byte)
	defer writeBuffers.Put(bp)
	scratch := (*bp)[:cap(*bp)]
	for c.rd.inMessage {
		if _, err := c.reader.read(ctx, scratch); err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// readError translates an error from the network into what readers see,
// recording it when it ends the connection.
func (c *Conn) readError(ctx context.Context, err error) error {
	if c.rd.err != nil {
		return c.rd.err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// A context or the caller's read deadline; the connection is
		// intact.
		return contextError(ctx, err)
	}
	var cerr *connError
	select {
	case <-c.closed:
		cerr = c.closedError()
	default:
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		cerr = &connError{code: StatusAbnormalClosure, msg: "connection lost", cause: err}
		c.readLost.Store(cerr) // before teardown, for a Close waiting on c.closed
	}
	c.rd.err = cerr
	c.endReads(false)
	c.teardown()
	return cerr
}

// messageReader is the reader [Conn.Reader] returns. It lives inside the Conn
// so that handing it out allocates nothing.
type messageReader struct {
	c   *Conn
	ctx context.Context
}

// Read reads the message payload, validating text as UTF-8 and applying the
// read limit to decompressed data.
func (r *messageReader) Read(p []byte) (int, error) {
	c := r.c
	if err := c.readLock.lock(r.ctx, nil); err != nil {
		return 0, err
	}
	defer c.readLock.unlock()
	if !c.rd.inMessage {
		if c.rd.err != nil {
			return 0, c.rd.err
		}
		return 0, io.EOF
	}
	c.readDeadline.begin(r.ctx)
	defer c.readDeadline.end()
	return r.read(r.ctx, p)
}

// read is Read for a caller that holds the read lock.
func (r *messageReader) read(ctx context.Context, p []byte) (int, error) {
	c := r.c
	var n int
	var err error
	if c.rd.compressed {
		n, err = c.inflate(ctx, p)
		c.rd.msgBytes += int64(n)
		if limit := c.readLimit.Load(); c.rd.msgBytes > limit {
			return 0, c.fail(StatusMessageTooBig, fmt.Sprintf("decompressed message exceeds the read limit of %d bytes", limit))
		}
	} else {
		n, err = c.readPayload(ctx, p)
		c.rd.msgBytes += int64(n)
	}
	if c.rd.msgType == MessageText && !c.rd.utf8.write(p[:n]) {
		return 0, c.fail(StatusInvalidFramePayloadData, "text message is not valid UTF-8")
	}
	if err == io.EOF {
		if c.rd.msgType == MessageText && !c.rd.utf8.complete() {
			return 0, c.fail(StatusInvalidFramePayloadData, "text message ends inside a UTF-8 sequence")
		}
		c.rd.inMessage = false
	}
	return n, err
}

// Write writes p as one message of type typ. It waits, as long as ctx
// allows, for a message another goroutine is writing to finish; writes from
// concurrent goroutines never interleave.
//
// Write returns once the message is in the kernel's send buffer, with one
// exception that saves a system call per message when a peer pipelines: on
// a TCP connection on Unix, while more of the peer's messages are already
// buffered for reading, a message up to 16 KiB is held and sent together
// with those written after it. Held messages go out, in order, when the
// reader is about to wait for input, with the next message that is not held
// (a Close frame is never held), before [Conn.CloseNow] closes the socket,
// and at the latest a millisecond after they were written.
func (c *Conn) Write(ctx context.Context, typ MessageType, p []byte) error {
	if typ != MessageText && typ != MessageBinary {
		return fmt.Errorf("websocket: cannot write a message of type %v", typ)
	}
	if err := c.msgLock.lock(ctx, c.closed); err != nil {
		return c.writeLockError(err)
	}
	defer c.msgLock.unlock()
	if c.compressing(len(p)) {
		return c.writeCompressed(ctx, typ, p)
	}
	return c.writeFrame(ctx, Header{Fin: true, Opcode: Opcode(typ)}, p)
}

// Writer returns a writer for one message of type typ, which is sent in
// fragments as the caller writes, so a message of any size needs no more
// memory than a frame. The message ends, and other writers may write, when
// the writer is closed: always close it. ctx bounds every write to the
// returned writer.
func (c *Conn) Writer(ctx context.Context, typ MessageType) (io.WriteCloser, error) {
	if typ != MessageText && typ != MessageBinary {
		return nil, fmt.Errorf("websocket: cannot write a message of type %v", typ)
	}
	if err := c.msgLock.lock(ctx, c.closed); err != nil {
		return nil, c.writeLockError(err)
	}
	c.writer.start(ctx, typ)
	return &c.writer, nil
}

// writeLockError says why a writer could not take its turn.
func (c *Conn) writeLockError(err error) error {
	if errors.Is(err, net.ErrClosed) {
		if werr := c.writeErr.Load(); werr != nil {
			return werr
		}
		return errWriteClosed
	}
	return err
}

// failWrites ends writing after a write failed in a way that leaves the
// stream broken, and makes every later write report why. It closes the
// connection, unless the write failed because the peer has closed it: what
// the peer sent before, its Close frame perhaps among it, is then still in
// the socket for readers (and Close) to take, and the read that finds the
// end closes the connection. Should nobody read (an application that stops
// at a failed write, say), the connection closes when a closing handshake
// would have timed out.
func (c *Conn) failWrites(msg string, cause error) error {
	gone := peerGone(cause)
	if !gone {
		msg += "; connection closed"
	}
	err := &connError{code: StatusAbnormalClosure, msg: msg, cause: cause}
	if !c.writeErr.CompareAndSwap(nil, err) {
		return c.writeErr.Load()
	}
	if !gone {
		c.teardown()
		return err
	}
	c.orphaned.Store(time.AfterFunc(closeHandshakeTimeout, c.teardown))
	select {
	case <-c.closed:
		c.orphaned.Load().Stop() // teardown came first, and found no timer
	default:
	}
	return err
}

// releaseMemory gives what the Conn keeps for reading and writing messages
// back to the pools as the connection closes, rather than when the
// application lets go of the Conn: the read buffer, and with permessage-
// deflate the compressor and window that context takeover keeps (over a
// MiB). A reader or writer at work holds its lock and lets go of what it
// uses itself as it finds the connection closed; what is buffered is
// dropped, as nothing can answer it now.
func (c *Conn) releaseMemory() {
	if c.readLock.tryLock() {
		// No read call is under way, though a reader may be in the
		// middle of a message: reading ends here, or it would go on
		// from wherever the net.Conn stands past what is dropped.
		if c.rd.err == nil {
			c.rd.err = c.closedError()
		}
		c.endReads(true) // no read call is in the inflater
		c.readLock.unlock()
	}
	if c.flate != nil && c.msgLock.tryLock() {
		c.flate.releaseWriter(c.ext.deflate) // writes from now on do not compress
		c.msgLock.unlock()
	}
}

// endReads ends reading once rd.err is set, letting go of what reading
// keeps: what is buffered, the read buffer and, with permessage-deflate,
// the inflater and the window. The inflater goes back to its pool only if
// pool: a caller inside it (a read that failed under it) leaves it to the
// collector. The caller holds the read lock.
func (c *Conn) endReads(pool bool) {
	c.rd.inMessage, c.rd.held = false, false // every read reports rd.err now
	c.in.drop()
	if c.flate != nil {
		c.flate.releaseReader(pool)
	}
}

// closedError is what reads report once the connection was closed on our
// side.
func (c *Conn) closedError() *connError {
	if kerr := c.keepAliveError(); kerr != nil {
		return &connError{code: StatusAbnormalClosure, msg: "connection closed by keepalive", cause: kerr}
	}
	return &connError{code: StatusAbnormalClosure, msg: "connection closed", cause: net.ErrClosed}
}

// onlyReadsLeft reports whether writing ended because the peer closed the
// connection, and what the peer sent before is still to be read (see
// failWrites).
func (c *Conn) onlyReadsLeft() bool {
	select {
	case <-c.closed:
		return false
	default:
	}
	err := c.writeErr.Load()
	return err != nil && peerGone(err.cause)
}

var errWriteClosed = fmt.Errorf("websocket: write to a closed connection: %w", net.ErrClosed)

// writeControl sends a control frame; it may go between the fragments of a
// message being streamed.
func (c *Conn) writeControl(ctx context.Context, op Opcode, payload []byte) error {
	return c.writeFrame(ctx, Header{Fin: true, Opcode: op}, payload)
}

// writeFrame writes one frame with payload, masking it on a client. Frames
// are written whole under frameLock. A Close frame is sent at most once, and
// nothing after it.
func (c *Conn) writeFrame(ctx context.Context, h Header, payload []byte) error {
	return c.writeWire(ctx, h, payload, nil)
}

// writeWire is writeFrame for a frame that may come already framed: a
// server writes wire, when not nil, as it is (see [PreparedMessage]).
func (c *Conn) writeWire(ctx context.Context, h Header, payload, wire []byte) error {
	if err := c.frameLock.lock(ctx, c.closed); err != nil {
		return c.writeLockError(err)
	}
	defer c.frameLock.unlock()
	if err := c.writeErr.Load(); err != nil {
		return err
	}
	if c.closeSent && h.Opcode != OpPong {
		// §5.5.1 ends data frames, §5.5.2 still asks for a Pong for
		// each Ping until the peer's Close has come.
		return errWriteClosed
	}
	if h.Opcode == OpClose {
		c.closeSent = true
	}
	h.Length = int64(len(payload))
	if !c.server {
		h.Masked = true
		h.MaskKey = newMaskKey()
		wire = nil
	}
	if h.Opcode != OpClose && c.batching.Load() {
		if err := c.writeDeadline.expired(ctx); err != nil {
			return err
		}
		if c.hold(h, payload, wire) {
			return nil
		}
	}
	c.writeDeadline.begin(ctx)
	n, err := c.sendFrame(h, payload, wire)
	c.writeDeadline.end()
	if err == nil {
		return nil
	}
	err = contextError(ctx, err)
	if n == 0 && isTimeout(err) {
		// Nothing reached the wire, or only whole frames held before
		// this one, so the stream is intact and the connection stays
		// usable.
		c.closeSent = c.closeSent && h.Opcode != OpClose
		return err
	}
	if n > 0 {
		return c.failWrites("write failed mid-frame", err)
	}
	return c.failWrites("write failed", err)
}

// sendFrame sends the held frames, if any, and then the frame, and returns
// how many bytes it wrote: 0 if it failed with the stream between frames.
func (c *Conn) sendFrame(h Header, payload, wire []byte) (int, error) {
	if c.held.buf != nil {
		held := len(*c.held.buf)
		if c.hold(h, payload, wire) {
			// One write for all.
			n, err := c.sendHeld()
			if n == 0 && c.held.buf != nil {
				*c.held.buf = (*c.held.buf)[:held]
			}
			return n, err
		}
		if n, err := c.sendHeld(); err != nil {
			return n, err
		}
	}
	if wire != nil {
		return c.nc.Write(wire)
	}
	return c.writeFrameTo(h, payload)
}

// writeFrameTo puts the frame on the wire and returns how many bytes it
// wrote. Small frames are copied behind their header into one pooled buffer
// and written with one call. A large server frame goes out with its payload
// in place (writev) unless the kernel would copy it slowly from there; a
// large client frame must be masked, which the caller's payload must not
// be. Both of those are staged (stage.go).
func (c *Conn) writeFrameTo(h Header, payload []byte) (int, error) {
	bp := writeBuffers.Get().(*[]byte)
	defer writeBuffers.Put(bp)
	buf := AppendHeader((*bp)[:0], h)
	fits := len(buf)+len(payload) <= cap(buf)
	switch {
	case h.Masked && fits:
		start := len(buf)
		buf = append(buf, payload...)
		maskWords(buf[start:], leUint32(h.MaskKey))
		return c.nc.Write(buf)
	case fits:
		return c.nc.Write(append(buf, payload...))
	case h.Masked:
		return c.writeStaged(buf, payload, true, leUint32(h.MaskKey))
	case stageSlowWrites && c.in.raw != nil && slowInPlace(len(buf), payload):
		return c.writeStaged(buf, payload, false, 0)
	}
	return c.writeInPlace(buf, payload)
}

// writeInPlace writes head and then payload with one writev where nc
// is a socket, without copying payload.
func (c *Conn) writeInPlace(head, payload []byte) (int, error) {
	c.iov = [2][]byte{head, payload}
	c.iovBufs = c.iov[:]
	n, err := writeVector(c.nc, &c.iovBufs)
	c.iov = [2][]byte{}
	return int(n), err
}

// writeVector writes bufs to nc, consuming them, with one writev where nc
// is a socket. Where the race detector or a sanitizer watches, each buffer
// goes in a Write of its own instead: the runtime's writev does not tell
// them that the write happens before the peer's read (see detector_on.go).
func writeVector(nc net.Conn, bufs *net.Buffers) (int64, error) {
	if !instrumented {
		return bufs.WriteTo(nc)
	}
	var n int64
	for len(*bufs) > 0 {
		m, err := nc.Write((*bufs)[0])
		n += int64(m)
		if err != nil {
			return n, err
		}
		*bufs = (*bufs)[1:]
	}
	return n, nil
}

// writeBufferSize is the size of the pooled buffers that frames are
// assembled in, and the fragment size of streamed messages.
const writeBufferSize = 16 << 10

var writeBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, writeBufferSize)
	return &b
}}

// messageWriter is the writer [Conn.Writer] returns. It lives inside the Conn
// so that handing it out allocates nothing; it exists while its holder has
// the message lock.
type messageWriter struct {
	c        *Conn
	ctx      context.Context
	buf      *[]byte // pooled; the payload of the next frame
	fw       *flate.Writer
	err      error  // the first write that failed; the message cannot go on
	op       Opcode // of the next frame: the message type, then continuation
	compress bool
	closed   bool
}

func (w *messageWriter) start(ctx context.Context, typ MessageType) {
	w.ctx = ctx
	w.op = Opcode(typ)
	w.compress = w.c.compressing(-1)
	w.closed = false
	w.err = nil
}

// Write buffers p and sends full frames as the buffer fills; a write larger
// than the buffer goes out as a frame of its own without being copied.
func (w *messageWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errors.New("websocket: write to a closed message writer")
	}
	if w.compress {
		return w.writeCompressed(p)
	}
	return w.writeRaw(p)
}

// writeRaw buffers payload bytes, flushing full frames.
func (w *messageWriter) writeRaw(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if w.buf == nil {
			if len(p) >= writeBufferSize {
				if err := w.flush(p, false); err != nil {
					return written, err
				}
				return written + len(p), nil
			}
			w.buf = writeBuffers.Get().(*[]byte)
			*w.buf = (*w.buf)[:0]
		}
		b := *w.buf
		k := min(len(p), cap(b)-len(b))
		*w.buf = append(b, p[:k]...)
		p = p[k:]
		written += k
		if len(*w.buf) == cap(*w.buf) {
			if err := w.flush(*w.buf, false); err != nil {
				return written, err
			}
			*w.buf = (*w.buf)[:0]
		}
	}
	return written, nil
}

// flush sends payload as the next frame of the message. Once a frame fails
// the message is over: if nothing of it was sent, it is dropped and the
// connection goes on; if some was, or the compressor's window holds it,
// the connection fails.
func (w *messageWriter) flush(payload []byte, fin bool) error {
	if w.err != nil {
		return w.err
	}
	h := Header{Fin: fin, Opcode: w.op}
	if w.op != OpContinuation {
		h.Rsv1 = w.compress
	}
	if err := w.c.writeFrame(w.ctx, h, payload); err != nil {
		if w.op == OpContinuation {
			err = w.c.breakWrites("the rest of a message whose first frames were sent", err)
		} else if w.compress {
			err = w.c.compressedWriteFailed(err)
		}
		w.err = err
		return err
	}
	w.op = OpContinuation
	return nil
}

// breakWrites fails the connection after a write that cannot be taken back
// went wrong: the peer has the start of a message that can never end, or
// will decompress with a window missing what was lost.
func (c *Conn) breakWrites(what string, cause error) error {
	return c.failWrites("could not send "+what, cause)
}

// Close sends what is buffered as the message's final frame and lets other
// writers write.
func (w *messageWriter) Close() error {
	if w.closed {
		return errors.New("websocket: message writer already closed")
	}
	w.closed = true
	defer w.c.msgLock.unlock()
	var err error
	if w.compress {
		err = w.closeCompressed()
	} else {
		var payload []byte
		if w.buf != nil {
			payload = *w.buf
		}
		// After a failed frame, flush only reports the failure.
		err = w.flush(payload, true)
	}
	if w.buf != nil {
		writeBuffers.Put(w.buf)
		w.buf = nil
	}
	return err
}

// Ping sends a ping and waits for the pong that answers it, or for ctx to be
// done. Pongs are delivered by the goroutine reading from the connection, so
// one must be reading.
func (c *Conn) Ping(ctx context.Context) error {
	c.pingMu.Lock()
	c.pingSeq++
	id := c.pingSeq
	if c.pings == nil {
		c.pings = make(map[uint64]chan struct{})
	}
	pong := make(chan struct{})
	c.pings[id] = pong
	c.pingMu.Unlock()
	defer func() {
		c.pingMu.Lock()
		delete(c.pings, id)
		c.pingMu.Unlock()
	}()
	var payload [8]byte
	putBeUint64(payload[:], id)
	if err := c.writeControl(ctx, OpPing, payload[:]); err != nil {
		return err
	}
	select {
	case <-pong:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return fmt.Errorf("websocket: connection closed before the pong arrived: %w", net.ErrClosed)
	}
}

// pongReceived wakes the Ping waiting for this pong, if any. A pong nobody
// waits for (unsolicited, duplicate, late) is ignored, as §5.5.3 allows.
func (c *Conn) pongReceived(payload []byte) {
	if len(payload) != 8 {
		return
	}
	id := beUint64(payload)
	c.pingMu.Lock()
	if pong, ok := c.pings[id]; ok {
		close(pong)
		delete(c.pings, id)
	}
	c.pingMu.Unlock()
}
