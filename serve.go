package websocket

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Serve accepts connections on ln and answers the one HTTP request each
// brings with h, in a goroutine per connection. It is a lighter front door
// than net/http for a port that serves WebSocket: a handler that calls
// [Accept] gets its Conn without net/http's connection machinery (no
// background read to stop, no buffers left over from the hijack), and once
// the handler returns Serve keeps nothing of the request. An opening
// handshake allocates a third of what it does through [http.Server]; its
// CPU time, mostly the kernel's, is the same. See README "Performance".
//
// Handlers and middleware written for net/http work unchanged, within
// these limits:
//
//   - One request per connection, HTTP/1.0 or HTTP/1.1 only: a response
//     other than an upgrade is sent with "Connection: close" and the
//     connection is closed after it. Upgrade requests must not have a body.
//   - The request's header must fit in 64 KiB. It, and any response other
//     than an upgrade, must be read and written within 10 seconds of the
//     connection's arrival; [Accept], and Hijack, lift those deadlines from
//     the connections they hand over.
//   - The request's context is cancelled when the handler returns, as
//     net/http's is; a client that goes away while the handler runs does
//     not cancel it.
//   - Informational (1xx) responses a handler writes are dropped.
//   - A panic in h is logged, as net/http does, and closes the connection.
//
// For TLS wrap ln with [crypto/tls.NewListener]; the request's TLS field is
// set. Offer only "http/1.1" in the configuration's NextProtos: Serve
// does not speak HTTP/2.
//
// Serve returns the error that ended ln.Accept, such as [net.ErrClosed]
// after ln.Close; it retries errors that say they are temporary (too many
// open files, say) after a pause. Connections already accepted carry on.
func Serve(ln net.Listener, h http.Handler) error {
	var pause time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				time.Sleep(pause)
				continue
			}
			return err
		}
		pause = 0
		go serveConn(nc, h)
	}
}

// serveTimeout bounds, from a connection's arrival, reading its request
// and writing a response other than an upgrade. A variable for tests.
var serveTimeout = 10 * time.Second

// serveMaxHeaderBytes bounds the request line and header fields.
const serveMaxHeaderBytes = 64 << 10

// serveState is the reader a request is parsed from, pooled. A handler
// that takes the connection with Hijack keeps the reader, and then the
// state is not reused. The response writer is not pooled: a handler may
// (wrongly) keep it past its return, and must not reach another
// connection through it.
type serveState struct {
	conn  readRecorder
	limit io.LimitedReader
	br    *bufio.Reader
}

var serveStates = sync.Pool{New: func() any {
	s := &serveState{}
	s.br = bufio.NewReaderSize(&s.limit, 4<<10)
	return s
}}

// serveConn reads nc's request and answers it with h.
func serveConn(nc net.Conn, h http.Handler) {
	s := serveStates.Get().(*serveState)
	reuse := true
	defer func() {
		if reuse {
			s.conn.r = nil
			s.br.Reset(&s.limit)
			serveStates.Put(s)
		}
	}()
	_ = nc.SetDeadline(time.Now().Add(serveTimeout))
	s.conn = readRecorder{r: nc}
	s.limit = io.LimitedReader{R: &s.conn, N: serveMaxHeaderBytes}
	r, status, err := readServedRequest(s)
	if err != nil {
		if status != 0 {
			refuseConn(nc, status, err.Error())
		}
		closeAfterResponse(nc)
		return
	}
	// The body, and whatever follows an upgrade, is not header.
	s.limit.N = math.MaxInt64
	r.RemoteAddr = nc.RemoteAddr().String()
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		r.TLS = &cs
	}

	// The context is cancelled when the handler returns, as net/http's
	// is, so that work the handler started for the request stops with
	// it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r = r.WithContext(ctx)

	w := &serveResponse{nc: nc, br: s.br, req: r}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				log.Printf("websocket: panic serving %v: %v\n%s", r.RemoteAddr, p, debug.Stack())
			}
			var hijacked bool
			hijacked, reuse = w.end()
			if !hijacked {
				abort(nc, w.wrote)
			}
		}
	}()
	h.ServeHTTP(w, r)
	cancel()
	var hijacked bool
	if hijacked, reuse = w.end(); !hijacked {
		w.finish()
		closeAfterResponse(nc)
	}
}

// readServedRequest reads the request and checks what net/http's server
// checks beyond [http.ReadRequest]. On a request it cannot serve it returns
// the status to answer with, or 0 if the client is gone or silent.
func readServedRequest(s *serveState) (*http.Request, int, error) {
	s.br.Reset(&s.limit)
	r, err := http.ReadRequest(s.br)
	switch {
	case err == nil:
	case s.limit.N == 0:
		return nil, http.StatusRequestHeaderFieldsTooLarge, fmt.Errorf(
			"the request header is larger than %d bytes", serveMaxHeaderBytes)
	case s.conn.err != nil:
		// The client left or stalled before the end of its request: what
		// ReadRequest says of the part it got is beside the point.
		return nil, 0, s.conn.err
	default:
		return nil, http.StatusBadRequest, fmt.Errorf("malformed request: %v", err)
	}
	if r.ProtoMajor != 1 {
		return nil, http.StatusHTTPVersionNotSupported, fmt.Errorf(
			"this server speaks HTTP/1.x, the request is %s", r.Proto)
	}
	// ReadRequest has refused a second Host field and moved the one there
	// is to r.Host.
	switch {
	case r.ProtoAtLeast(1, 1) && r.Host == "":
		return nil, http.StatusBadRequest, errors.New("missing required Host header")
	case !validHost(r.Host):
		return nil, http.StatusBadRequest, fmt.Errorf("malformed Host header %q", r.Host)
	}
	return r, 0, nil
}

// validHost reports whether host has only the bytes a host name, an IP
// literal with its zone, and a port may have (RFC 3986 §3.2.2), as
// net/http requires.
func validHost(host string) bool {
	for i := 0; i < len(host); i++ {
		c := host[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && strings.IndexByte("-._~!$&'()*+,;=:[]%", c) < 0 {
			return false
		}
	}
	return true
}

// readRecorder keeps the error that ended reading from r, which
// [http.ReadRequest] may report as a malformed request instead.
type readRecorder struct {
	r   io.Reader
	err error
}

func (rr *readRecorder) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if err != nil {
		rr.err = err
	}
	return n, err
}

// refuseConn answers a request Serve refuses with status and
// reason, outside net/http.
func refuseConn(nc net.Conn, status int, reason string) {
	h := make(http.Header, 2)
	refusalHeaders(h, status)
	b := appendResponseHead(nil, status, h, "text/plain; charset=utf-8", len(reason)+1)
	b = append(append(b, reason...), '\n')
	_ = nc.SetWriteDeadline(time.Now().Add(handshakeWriteTimeout))
	_, _ = nc.Write(b)
}

// appendResponseHead appends the status line and header fields of a
// response after which the connection closes. contentLength < 0 leaves the
// body's length to the connection's end.
func appendResponseHead(dst []byte, status int, h http.Header, contentType string, contentLength int) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(status)...)
	dst = append(dst, "\r\nConnection: close\r\n"...)
	if _, ok := h["Date"]; !ok {
		dst = append(dst, "Date: "...)
		dst = time.Now().UTC().AppendFormat(dst, http.TimeFormat)
		dst = append(dst, "\r\n"...)
	}
	if _, ok := h["Content-Type"]; !ok && contentType != "" {
		dst = appendHeader(dst, "Content-Type", contentType)
	}
	if _, ok := h["Content-Length"]; !ok && contentLength >= 0 {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(contentLength), 10)
		dst = append(dst, "\r\n"...)
	}
	dst = appendHeaderFields(dst, h, nil)
	return append(dst, "\r\n"...)
}

// closeAfterResponse closes nc so that the client reads the response
// whatever it sent: closing a socket with unread input resets the
// connection, and the reset can overtake the response. So it shuts down
// the sending side and discards input for a moment first, as net/http does.
func closeAfterResponse(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = nc.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(nc, 256<<10))
	}
	nc.Close()
}

// abort closes nc after a handler's panic. If the response has begun, it
// resets the connection: its body ends where the connection does, and a
// normal close would pass a cut-short body off as whole.
func abort(nc net.Conn, begun bool) {
	if tc, ok := nc.(*tls.Conn); ok && begun {
		// Not tc.Close: its close_notify would mark the end as clean.
		nc = tc.NetConn()
	}
	if l, ok := nc.(interface{ SetLinger(int) error }); ok && begun {
		_ = l.SetLinger(0)
	}
	nc.Close()
}

// serveResponse is the [http.ResponseWriter] Serve gives its handler. The
// head is written with the first Write, without buffering: the connection
// closes after the response, which ends a body of unknown length.
type serveResponse struct {
	nc      net.Conn
	br      *bufio.Reader
	req     *http.Request
	header  http.Header
	status  int
	wrote   bool  // the status line and header fields are on the wire
	noBody  bool  // the request or the status allows no body
	err     error // from writing the head
	scratch [256]byte

	// mu orders taking the connection against the handler's return, for
	// a handler that (wrongly) lets another goroutine do it.
	mu         sync.Mutex
	ended      bool // ServeHTTP has returned
	hijacked   bool // the handler or Accept has taken the connection
	gaveReader bool // and holds br
}

func (w *serveResponse) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

func (w *serveResponse) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.hijacked || w.wrote || w.status != 0 || code < 200 {
		return
	}
	w.status = code
}

func (w *serveResponse) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wrote {
		w.writeHead(p, -1)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	return w.nc.Write(p)
}

// Flush writes the head if it is not out yet; the body is not buffered.
func (w *serveResponse) Flush() {
	if !w.hijacked && !w.wrote {
		w.writeHead(nil, -1)
	}
}

// Hijack lets the handler take the connection, as [http.Hijacker] does.
func (w *serveResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if err := w.take(); err != nil {
		return nil, nil, err
	}
	w.gaveReader = true
	w.mu.Unlock()
	// Serve's deadlines are for the request, not for what the handler
	// does with the connection; net/http clears its own here too.
	_ = w.nc.SetDeadline(time.Time{})
	return w.nc, bufio.NewReadWriter(w.br, bufio.NewWriter(w.nc)), nil
}

// takeOver is [Accept]'s Hijack: it hands over the connection, a copy of
// the bytes read behind the request, and w's own buffer to build the
// response in.
func (w *serveResponse) takeOver() (nc net.Conn, buffered, resp []byte, err error) {
	if err := w.take(); err != nil {
		return nil, nil, nil, err
	}
	defer w.mu.Unlock()
	if n := w.br.Buffered(); n > 0 {
		// Copied, as the reader goes back to the pool when the handler
		// returns, which may be before Accept is done.
		buffered, _ = w.br.Peek(n)
		buffered = append([]byte(nil), buffered...)
	}
	return w.nc, buffered, w.scratch[:0], nil
}

// errHandlerReturned refuses to take the connection of a request whose
// handler has returned: Serve has answered it and closed it.
var errHandlerReturned = errors.New("websocket: the connection is gone: the handler has returned")

// take marks the connection taken, if it can be, and returns with w.mu
// held; otherwise it says why not.
func (w *serveResponse) take() error {
	w.mu.Lock()
	var err error
	switch {
	case w.ended:
		err = errHandlerReturned
	case w.hijacked:
		err = http.ErrHijacked
	case w.wrote:
		err = errors.New("websocket: the response has begun")
	}
	if err != nil {
		w.mu.Unlock()
		return err
	}
	w.hijacked = true
	return nil
}

// end records that the handler has returned and reports whether the
// connection was taken, and whether Serve can reuse the reader.
func (w *serveResponse) end() (hijacked, reuseReader bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	return w.hijacked, !w.gaveReader
}

// finish completes the response when the handler returns.
func (w *serveResponse) finish() {
	if !w.wrote {
		w.writeHead(nil, 0)
	}
}

// writeHead writes the status line and header fields, with first, the
// beginning of the body, for sniffing its type.
func (w *serveResponse) writeHead(first []byte, contentLength int) {
	w.wrote = true
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.noBody = w.req.Method == http.MethodHead || w.status == http.StatusNoContent ||
		w.status == http.StatusNotModified
	contentType := ""
	if len(first) > 0 && !w.noBody {
		contentType = http.DetectContentType(first)
	}
	if w.noBody {
		contentLength = -1
	}
	_, w.err = w.nc.Write(appendResponseHead(w.scratch[:0], w.status, w.header, contentType, contentLength))
}
