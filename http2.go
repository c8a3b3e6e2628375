package websocket

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"
)

// WebSockets over HTTP/2 (RFC 8441). A client that has seen the server's
// SETTINGS_ENABLE_CONNECT_PROTOCOL opens a WebSocket as an extended CONNECT
// request on a stream of an HTTP/2 connection it already has. There is no
// connection to hijack: the WebSocket's bytes are the request body and the
// response body. streamConn makes that pair look like a net.Conn, so that
// everything above it (framing, messages, limits, the close handshake) is
// the same code for both versions of HTTP.

// isExtendedConnect reports whether r opens a WebSocket with HTTP/2's
// extended CONNECT (RFC 8441 §4).
func isExtendedConnect(r *http.Request) bool {
	return r.ProtoMajor == 2 && r.Method == http.MethodConnect && r.Header.Get(":protocol") != ""
}

// checkConnectRequest applies RFC 8441 §5 to an extended CONNECT request:
// the protocol must be "websocket" and the version 13. There is no
// Sec-WebSocket-Key; the stream itself proves the client speaks HTTP/2.
func checkConnectRequest(r *http.Request) *HandshakeError {
	if p := r.Header.Get(":protocol"); p != "websocket" {
		return &HandshakeError{Status: http.StatusBadRequest,
			Reason: fmt.Sprintf("extended CONNECT for protocol %q, this endpoint speaks websocket", p)}
	}
	return checkVersion(r)
}

// acceptStream completes an extended CONNECT handshake with a 200 response
// and returns a Conn over the stream.
func acceptStream(w http.ResponseWriter, r *http.Request, subprotocol string, ext extensions, extHeader string) (*Conn, error) {
	rc := http.NewResponseController(w)
	// The server's ReadTimeout and WriteTimeout apply to each stream, and
	// on HTTP/2 a deadline that fires resets the stream: a long-lived
	// WebSocket must not inherit them.
	if err := rc.SetReadDeadline(time.Time{}); err != nil {
		return nil, refuse(w, &HandshakeError{Status: http.StatusInternalServerError,
			Reason: "cannot clear the stream's read deadline: " + err.Error()})
	}
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	for k := range h {
		if handshakeField(k) {
			delete(h, k) // the handshake's own, as on HTTP/1.1
		}
	}
	if subprotocol != "" {
		h.Set("Sec-WebSocket-Protocol", subprotocol)
	}
	if extHeader != "" {
		h.Set("Sec-WebSocket-Extensions", extHeader)
	}
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil, &HandshakeError{Status: http.StatusOK, Reason: "sending the handshake response: " + err.Error()}
	}
	s := newStreamConn(w, r, rc)
	c := newConn(s, true, nil, subprotocol, ext)
	// The request's context ends when the client resets the stream or
	// the handler returns; either way the stream is gone.
	stop := context.AfterFunc(r.Context(), c.teardown)
	s.stopWatch = stop
	return c, nil
}

// streamConn is a net.Conn over an HTTP/2 stream: reads come from the
// request body, writes go to the response and are flushed at once.
//
// Deadlines cannot be passed down: on HTTP/2 a request body whose deadline
// fires is closed for good, and a response whose deadline fires resets the
// stream, while a Conn needs a read that times out between messages to
// leave the connection usable. So reads happen on a goroutine of the
// stream's own, into a buffer of its own, and a read that times out just
// stops waiting for it. A write deadline does go down to the stream: a
// write cut short by it ends the connection anyway.
type streamConn struct {
	body      io.ReadCloser
	w         http.ResponseWriter
	rc        *http.ResponseController
	reqCtx    context.Context
	local     net.Addr
	remote    net.Addr
	stopWatch func() bool

	// The read side belongs to the Conn's reader, one at a time.
	started  bool
	pending  bool // the pump holds a read request not yet collected
	unread   []byte
	readErr  error
	buf      []byte // the pump's; only touched by Read after a result
	wantRead chan struct{}
	results  chan streamRead
	readDL   wakeDeadline

	writeMu sync.Mutex

	closeOnce sync.Once
	closed    chan struct{}
}

type streamRead struct {
	n   int
	err error
}

// streamReadSize is the buffer reads from the stream go through: the size
// of an HTTP/2 DATA frame at the default SETTINGS_MAX_FRAME_SIZE.
const streamReadSize = 16 << 10

func newStreamConn(w http.ResponseWriter, r *http.Request, rc *http.ResponseController) *streamConn {
	s := &streamConn{
		body:     r.Body,
		w:        w,
		rc:       rc,
		reqCtx:   r.Context(),
		remote:   parseAddr(r.RemoteAddr),
		wantRead: make(chan struct{}),
		results:  make(chan streamRead, 1),
		closed:   make(chan struct{}),
	}
	s.readDL.init()
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		s.local = a
	} else {
		s.local = parseAddr("")
	}
	return s
}

// pump reads from the stream whenever Read asks it to, until the stream
// ends or the connection closes.
func (s *streamConn) pump() {
	for {
		select {
		case <-s.wantRead:
		case <-s.closed:
			return
		}
		n, err := s.body.Read(s.buf)
		s.results <- streamRead{n, err}
		if err != nil {
			return
		}
	}
}

func (s *streamConn) Read(p []byte) (int, error) {
	if len(s.unread) == 0 && s.readErr == nil {
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	if len(s.unread) > 0 {
		n := copy(p, s.unread)
		s.unread = s.unread[n:]
		return n, nil
	}
	return 0, s.readErr
}

// fill waits for the pump's next read, asking for one if none is under way.
func (s *streamConn) fill() error {
	if !s.started {
		s.started = true
		s.buf = make([]byte, streamReadSize)
		go s.pump()
	}
	if !s.pending {
		select {
		case s.wantRead <- struct{}{}:
			s.pending = true
		case <-s.closed:
			return net.ErrClosed
		}
	}
	select {
	case r := <-s.results:
		s.pending = false
		s.unread = s.buf[:r.n]
		s.readErr = r.err
		return nil
	case <-s.readDL.wait():
		return os.ErrDeadlineExceeded
	case <-s.closed:
		return net.ErrClosed
	}
}

func (s *streamConn) Write(p []byte) (int, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	// Once the handler has returned, net/http has finished the response
	// and the writer must not be used.
	if s.reqCtx.Err() != nil {
		return 0, net.ErrClosed
	}
	n, err := s.w.Write(p)
	if err == nil {
		err = s.rc.Flush()
	}
	return n, err
}

// Close stops reads and writes. The stream itself ends when the handler
// that accepted the WebSocket returns.
func (s *streamConn) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		if s.stopWatch != nil {
			s.stopWatch()
		}
		// Unblocks the pump's read.
		_ = s.body.Close()
	})
	return nil
}

func (s *streamConn) LocalAddr() net.Addr  { return s.local }
func (s *streamConn) RemoteAddr() net.Addr { return s.remote }

func (s *streamConn) SetDeadline(t time.Time) error {
	_ = s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

func (s *streamConn) SetReadDeadline(t time.Time) error {
	s.readDL.set(t)
	return nil
}

func (s *streamConn) SetWriteDeadline(t time.Time) error {
	return s.rc.SetWriteDeadline(t)
}

// parseAddr turns the address net/http gives as a string into a net.Addr.
func parseAddr(s string) net.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return streamAddr(s)
	}
	return net.TCPAddrFromAddrPort(ap)
}

// streamAddr is an address net/http gave in a form we do not parse.
type streamAddr string

func (a streamAddr) Network() string { return "tcp" }
func (a streamAddr) String() string  { return string(a) }

// wakeDeadline is a deadline that a blocked operation can wait on: its
// channel is closed when the deadline passes.
type wakeDeadline struct {
	mu      sync.Mutex
	timer   *time.Timer
	expired chan struct{}
}

func (d *wakeDeadline) init() { d.expired = make(chan struct{}) }

func (d *wakeDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		// The timer fired, or is firing: wait for it to close the
		// channel so that we do not race with it below.
		<-d.expired
	}
	d.timer = nil
	passed := isClosed(d.expired)
	switch dur := time.Until(t); {
	case t.IsZero() || dur > 0:
		if passed {
			d.expired = make(chan struct{})
		}
		if !t.IsZero() {
			ch := d.expired
			d.timer = time.AfterFunc(dur, func() { close(ch) })
		}
	case !passed:
		close(d.expired)
	}
}

func (d *wakeDeadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expired
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
