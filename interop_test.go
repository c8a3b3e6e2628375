package websocket_test

// Interoperability tests against real WebSocket implementations: headless
// Chromium, Node's ws and Python's websockets, driven through os/exec by
// internal/interop (see its README.md). A peer that is not installed skips
// its tests locally and fails them on CI (CI=true).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
	"github.com/duplex-go/websocket/internal/interop"
)

// interopTimeout bounds each interop subtest, and the peer processes in it.
const interopTimeout = 90 * time.Second

func interopContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), interopTimeout)
	t.Cleanup(cancel)
	return ctx
}

// interopSizes are the message sizes exchanged with the scripted peers; the
// peers' own clients use the same list.
var interopSizes = []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 16 << 20}

// interopSetup is one way of connecting to a scripted peer, in either role.
type interopSetup struct {
	name        string
	ours        *websocket.CompressionOptions // our side's permessage-deflate
	flags       []string                      // the peer's flags
	tls         bool                          // wss://
	stream      bool                          // our echo server streams with Reader and Writer
	subprotocol string                        // offered by the client, chosen by the server
	serve       bool                          // our server answers with websocket.Serve, not net/http
	// deflate is whether permessage-deflate is negotiated, and noTakeover
	// whether the server then gives up context takeover.
	deflate, noTakeover bool
	// huge includes 16 MiB messages. Under the race detector compressing
	// and checking them costs seconds, so only some setups do.
	huge bool
}

// maxSize is the largest message size the setup exchanges.
func (s interopSetup) maxSize() int {
	if s.huge {
		return 16 << 20
	}
	return 1 << 20
}

var interopSetups = []interopSetup{
	{name: "plain", huge: true, subprotocol: "duplex.interop"},
	{name: "deflate-takeover", deflate: true, stream: true, huge: true,
		ours: &websocket.CompressionOptions{ContextTakeover: true}, flags: []string{"--deflate"}},
	// We ask for no context takeover; every message compressed.
	{name: "deflate-no-takeover", deflate: true, noTakeover: true, serve: true,
		ours: &websocket.CompressionOptions{Threshold: -1}, flags: []string{"--deflate"}},
	// The peer asks for no context takeover.
	{name: "deflate-peer-no-takeover", deflate: true, noTakeover: true, stream: true,
		ours: &websocket.CompressionOptions{ContextTakeover: true}, flags: []string{"--deflate", "--no-context-takeover"}},
	{name: "wss-deflate", tls: true, deflate: true, serve: true,
		ours: &websocket.CompressionOptions{ContextTakeover: true}, flags: []string{"--deflate"}},
}

var interopPeers = []interop.Kind{interop.Node, interop.Python}

// TestInteropDial runs our client against the echo servers of Node's ws and
// Python's websockets: whole messages of every boundary size up to 16 MiB, a
// streamed fragmented message, a ping, and the closing handshake started by
// either side.
func TestInteropDial(t *testing.T) {
	for _, k := range interopPeers {
		for _, s := range interopSetups {
			t.Run(string(k)+"/"+s.name, func(t *testing.T) {
				t.Parallel()
				interop.Require(t, k)
				ctx := interopContext(t)
				flags := append([]string(nil), s.flags...)
				scheme := "ws"
				opts := &websocket.DialOptions{Compression: s.ours}
				if s.subprotocol != "" {
					opts.Subprotocols = []string{"other", s.subprotocol}
					flags = append(flags, "--subprotocol", s.subprotocol)
				}
				if s.tls {
					cert := interopTLS(t)
					certFile, keyFile := cert.files(t)
					flags = append(flags, "--tls-cert", certFile, "--tls-key", keyFile)
					scheme = "wss"
					opts.TLSConfig = &tls.Config{RootCAs: cert.pool}
				}
				p, port := interop.StartServer(ctx, t, k, interopTimeout, flags...)
				url := fmt.Sprintf("%s://127.0.0.1:%d/duplex", scheme, port)
				interopDialChecks(ctx, t, p, url, opts, s)
			})
		}
	}
}

func interopDialChecks(ctx context.Context, t *testing.T, p *interop.Process, url string, opts *websocket.DialOptions, s interopSetup) {
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("Dial %s: %v\n%s", url, err, p.Log())
	}
	defer c.CloseNow()
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	checkExtensions(t, ext, s)
	if p.Kind() == interop.Python && s.deflate && !slices.Contains(s.flags, "--no-context-takeover") &&
		!strings.Contains(ext, "server_max_window_bits=12") {
		// websockets' default; a server may bound its own window unasked.
		t.Errorf("Sec-WebSocket-Extensions %q: expected Python's server_max_window_bits=12", ext)
	}
	if got := c.Subprotocol(); got != s.subprotocol {
		t.Errorf("Subprotocol() = %q, want %q", got, s.subprotocol)
	}
	if s.tls {
		if _, ok := c.NetConn().(*tls.Conn); !ok {
			t.Errorf("NetConn is a %T, want a *tls.Conn", c.NetConn())
		}
	}
	c.SetReadLimit(64 << 20)

	echo := func(name string, typ websocket.MessageType, want []byte) {
		t.Helper()
		if err := c.Write(ctx, typ, want); err != nil {
			t.Fatalf("%s: Write: %v\n%s", name, err, p.Log())
		}
		gotTyp, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("%s: Read: %v\n%s", name, err, p.Log())
		}
		if gotTyp != typ {
			t.Fatalf("%s: echo is %v, want %v", name, gotTyp, typ)
		}
		if d := interopDiff(got, want); d != "" {
			t.Fatalf("%s: echo differs: %s", name, d)
		}
	}
	for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
		for _, n := range interopSizes {
			if n <= s.maxSize() {
				echo(fmt.Sprintf("%v-%d", typ, n), typ, interopPayload(typ, n))
			}
		}
	}

	// A streamed message: several writes, one of them empty and one larger
	// than a frame, make a fragmented message.
	for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
		var pieces [][]byte
		for _, n := range []int{10, 0, 70000, 3, 125} {
			pieces = append(pieces, interopPayload(typ, n))
		}
		w, err := c.Writer(ctx, typ)
		if err != nil {
			t.Fatalf("Writer: %v", err)
		}
		for _, piece := range pieces {
			if _, err := w.Write(piece); err != nil {
				t.Fatalf("streamed %v: Write: %v\n%s", typ, err, p.Log())
			}
		}
		if err := w.Close(); err != nil {
			t.Fatalf("streamed %v: Close: %v\n%s", typ, err, p.Log())
		}
		gotTyp, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("streamed %v: Read: %v\n%s", typ, err, p.Log())
		}
		if want := bytes.Join(pieces, nil); gotTyp != typ || !bytes.Equal(got, want) {
			t.Fatalf("streamed %v: echo is %v: %s", typ, gotTyp, interopDiff(got, want))
		}
	}

	// Ping waits for the pong, which a concurrent reader delivers. Cutting
	// that read short with its context leaves the connection usable.
	readCtx, cancelRead := context.WithCancel(ctx)
	readErr := make(chan error, 1)
	go func() {
		_, _, err := c.Read(readCtx)
		readErr <- err
	}()
	pingCtx, cancelPing := context.WithTimeout(ctx, 15*time.Second)
	err = c.Ping(pingCtx)
	cancelPing()
	cancelRead()
	if err := <-readErr; !errors.Is(err, context.Canceled) {
		t.Errorf("Read during Ping: got %v, want context.Canceled", err)
	}
	if err != nil {
		t.Fatalf("Ping: %v\n%s", err, p.Log())
	}
	if _, err := p.WaitEvent(ctx, func(e interop.Event) bool { return e.Event == "ping" && e.Size == 8 }); err != nil {
		t.Errorf("peer did not report our 8-byte ping: %v", err)
	}
	echo("after-ping", websocket.MessageText, []byte("still usable ✓"))

	// We close.
	const reason = "bye from duplex ✓"
	if err := c.Close(4000, reason); err != nil {
		t.Errorf("Close(4000): %v\n%s", err, p.Log())
	}
	ev, err := p.WaitEvent(ctx, func(e interop.Event) bool { return e.Event == "close" })
	if err != nil {
		t.Fatal(err)
	}
	if ev.Code != 4000 || ev.Reason != reason {
		t.Errorf("peer saw close %d %q, want 4000 %q", ev.Code, ev.Reason, reason)
	}

	// The peer closes, on a second connection.
	c2, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("second Dial: %v\n%s", err, p.Log())
	}
	defer c2.CloseNow()
	const peerReason = "peer bye ✓"
	if err := c2.Write(ctx, websocket.MessageText, []byte("close:4001:"+peerReason)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	_, _, err = c2.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != peerReason {
		t.Errorf("Read after the peer closed: got %v, want a CloseError 4001 %q", err, peerReason)
	}
	if got := websocket.CloseStatus(err); got != 4001 {
		t.Errorf("CloseStatus = %v, want 4001", got)
	}
	ev, err = p.WaitEvent(ctx, func(e interop.Event) bool { return e.Event == "close" && e.Code != 4000 })
	if err != nil {
		t.Fatal(err)
	}
	if ev.Code != 4001 {
		t.Errorf("peer saw close %d echoed, want 4001", ev.Code)
	}
	checkNoPeerErrors(t, p)
}

// TestInteropAccept runs the self-checking clients of Node's ws and Python's
// websockets against our echo server: the same sizes, fragmented messages
// (Python's with an extra empty final frame), a ping, and the closing
// handshake started by either side.
func TestInteropAccept(t *testing.T) {
	for _, k := range interopPeers {
		for _, s := range interopSetups {
			t.Run(string(k)+"/"+s.name, func(t *testing.T) {
				t.Parallel()
				interop.Require(t, k)
				ctx := interopContext(t)
				srv := newInteropServer(ctx, t)
				srv.opts = &websocket.AcceptOptions{Compression: s.ours}
				if s.subprotocol != "" {
					srv.opts.Subprotocols = []string{"other", s.subprotocol}
				}
				srv.stream = s.stream
				srv.limit = 64 << 20
				url, flags := srv.start(t, http.HandlerFunc(srv.echo), s.tls, s.serve)
				flags = append(flags, s.flags...)
				if s.subprotocol != "" {
					flags = append(flags, "--subprotocol", s.subprotocol)
				}
				flags = append(flags, "--server-close", "--max-size", strconv.Itoa(s.maxSize()))
				p := interop.StartClient(t, k, url+"/duplex", interopTimeout, flags...)

				res, err := p.WaitEvent(ctx, func(e interop.Event) bool { return e.Event == "result" })
				if err != nil {
					t.Fatal(err)
				}
				if !res.OK {
					t.Fatalf("%s client failed: %s\n%s", k, res.Error, p.Log())
				}
				select {
				case <-p.Exited():
				case <-ctx.Done():
					t.Fatalf("%s client did not exit after its result", k)
				}
				checkClientSteps(t, p, s.maxSize())
				open, _ := p.WaitEvent(ctx, func(e interop.Event) bool { return e.Event == "open" })
				checkExtensions(t, open.Extensions, s)
				if open.Protocol != s.subprotocol {
					t.Errorf("client saw subprotocol %q, want %q", open.Protocol, s.subprotocol)
				}
				checkNoPeerErrors(t, p)

				srv.waitHandlers(t)
				srv.mu.Lock()
				defer srv.mu.Unlock()
				var clientClosed, serverClosed int
				wantReason := interop.ClientCloseReason(k)
				for _, err := range srv.ends {
					var ce websocket.CloseError
					if errors.As(err, &ce) && ce.Code == interop.ClientCloseCode && ce.Reason == wantReason {
						clientClosed++
					} else {
						t.Errorf("a connection ended with %v, want CloseError %d %q", err, interop.ClientCloseCode, wantReason)
					}
				}
				for _, err := range srv.closes {
					if err != nil {
						t.Errorf("our Close(%d): %v", interop.ServerCloseCode, err)
					} else {
						serverClosed++
					}
				}
				if clientClosed != 1 || serverClosed != 1 {
					t.Errorf("%d connections closed by the client, %d by us; want 1 and 1", clientClosed, serverClosed)
				}
				wantPing := "ping from " + string(k)
				if len(srv.pings) != 1 || srv.pings[0] != wantPing {
					t.Errorf("pings received: %q, want [%q]", srv.pings, wantPing)
				}
			})
		}
	}
}

// checkClientSteps checks that a peer client reported every step passed.
func checkClientSteps(t *testing.T, p *interop.Process, maxSize int) {
	t.Helper()
	want := map[string]bool{"text-fragmented": false, "binary-fragmented": false,
		"ping": false, "close": false, "server-close": false}
	for _, n := range interopSizes {
		if n > maxSize {
			continue
		}
		want["text-"+strconv.Itoa(n)] = false
		want["binary-"+strconv.Itoa(n)] = false
	}
	for _, ev := range p.Events() {
		if ev.Event != "step" {
			continue
		}
		if !ev.OK {
			t.Errorf("step %s failed: %s", ev.Name, ev.Error)
		}
		if _, ok := want[ev.Name]; ok {
			want[ev.Name] = ev.OK
		}
	}
	for name, ok := range want {
		if !ok {
			t.Errorf("step %s did not pass", name)
		}
	}
	if t.Failed() {
		t.Log(p.Log())
	}
}

// checkExtensions checks a Sec-WebSocket-Extensions response against what
// the setup should have negotiated.
func checkExtensions(t *testing.T, ext string, s interopSetup) {
	t.Helper()
	if got := strings.Contains(ext, "permessage-deflate"); got != s.deflate {
		t.Errorf("Sec-WebSocket-Extensions %q: permessage-deflate negotiated %v, want %v", ext, got, s.deflate)
	}
	if got := strings.Contains(ext, "server_no_context_takeover"); s.deflate && got != s.noTakeover {
		t.Errorf("Sec-WebSocket-Extensions %q: server_no_context_takeover %v, want %v", ext, got, s.noTakeover)
	}
}

func checkNoPeerErrors(t *testing.T, p *interop.Process) {
	t.Helper()
	for _, ev := range p.Events() {
		if ev.Event == "error" || ev.Event == "unparsed" {
			t.Errorf("peer reported: %s", ev.Line)
		}
	}
}

// interopServer is our side of a test with a peer client: it tracks the
// connections its handlers accept and how each ended.
type interopServer struct {
	ctx    context.Context
	opts   *websocket.AcceptOptions
	limit  int64
	stream bool

	handlers sync.WaitGroup
	mu       sync.Mutex
	conns    []*websocket.Conn
	ends     []error  // how echo connections ended, from Read
	closes   []error  // what our Close returned where we closed
	pings    []string // payloads of the pings that arrived
	pingErrs []error  // results of our Ping (browser test)
	failures []string // anything else that went wrong
}

func newInteropServer(ctx context.Context, t *testing.T) *interopServer {
	s := &interopServer{ctx: ctx}
	t.Cleanup(func() { s.waitHandlers(t) })
	return s
}

// start serves h over HTTP, or HTTPS with the test certificate, and returns
// its ws:// or wss:// URL and the flags a peer client needs for it. With
// serve, websocket.Serve answers the requests instead of net/http.
func (s *interopServer) start(t *testing.T, h http.Handler, useTLS, serve bool) (string, []string) {
	if serve {
		return s.startServe(t, h, useTLS)
	}
	srv := httptest.NewUnstartedServer(h)
	if useTLS {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{interopTLS(t).cert}}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	if useTLS {
		return "wss" + strings.TrimPrefix(srv.URL, "https"), []string{"--insecure"}
	}
	return "ws" + strings.TrimPrefix(srv.URL, "http"), nil
}

// startServe is start with websocket.Serve.
func (s *interopServer) startServe(t *testing.T, h http.Handler, useTLS bool) (string, []string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme, flags := "ws", []string(nil)
	if useTLS {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{interopTLS(t).cert},
			NextProtos: []string{"http/1.1"}})
		scheme, flags = "wss", []string{"--insecure"}
	}
	served := make(chan error, 1)
	go func() { served <- websocket.Serve(ln, h) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-served; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v, want net.ErrClosed", err)
		}
	})
	return scheme + "://" + ln.Addr().String(), flags
}

// accept upgrades r and tracks the connection; the caller must call
// s.handlers.Done when its handler returns.
func (s *interopServer) accept(w http.ResponseWriter, r *http.Request) *websocket.Conn {
	c, err := websocket.Accept(w, r, s.opts)
	if err != nil {
		s.fail("Accept: %v", err)
		return nil
	}
	if s.limit != 0 {
		c.SetReadLimit(s.limit)
	}
	c.OnPing(func(p []byte) {
		s.mu.Lock()
		s.pings = append(s.pings, string(p))
		s.mu.Unlock()
	})
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	return c
}

func (s *interopServer) fail(format string, args ...any) {
	s.mu.Lock()
	s.failures = append(s.failures, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *interopServer) record(list *[]error, err error) {
	s.mu.Lock()
	*list = append(*list, err)
	s.mu.Unlock()
}

// waitHandlers closes every connection still open and waits for the
// handlers to return, then reports what went wrong in them. It runs at
// cleanup and may run earlier.
func (s *interopServer) waitHandlers(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	s.mu.Lock()
	for _, c := range s.conns {
		c.CloseNow()
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("handlers still running 10 s after their connections were closed")
	}
	s.mu.Lock()
	for _, f := range s.failures {
		t.Errorf("server: %s", f)
	}
	s.failures = nil
	s.mu.Unlock()
}

// echo echoes every message with its type, whole or streamed. A text message
// "close:<code>:<reason>" makes it close the connection with that code and
// reason, as the peer scripts' servers do.
func (s *interopServer) echo(w http.ResponseWriter, r *http.Request) {
	s.handlers.Add(1)
	defer s.handlers.Done()
	c := s.accept(w, r)
	if c == nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, msg, rest, err := s.next(c)
		if err != nil {
			s.record(&s.ends, err)
			return
		}
		if typ == websocket.MessageText && bytes.HasPrefix(msg, []byte("close:")) {
			if rest != nil {
				tail, err := io.ReadAll(rest)
				if err != nil {
					s.record(&s.ends, err)
					return
				}
				msg = append(msg, tail...)
			}
			s.closeAsAsked(c, msg)
			return
		}
		if rest == nil {
			err = c.Write(s.ctx, typ, msg)
		} else {
			err = s.copyMessage(c, typ, msg, rest)
		}
		if err != nil {
			s.fail("echo: %v", err)
			return
		}
	}
}

// next reads the next message: whole, or, when streaming, its first bytes
// and a reader for the rest.
func (s *interopServer) next(c *websocket.Conn) (websocket.MessageType, []byte, io.Reader, error) {
	if !s.stream {
		typ, msg, err := c.Read(s.ctx)
		return typ, msg, nil, err
	}
	typ, r, err := c.Reader(s.ctx)
	if err != nil {
		return 0, nil, nil, err
	}
	head := make([]byte, 64)
	n, err := io.ReadFull(r, head)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return typ, head[:n], r, err
}

// copyMessage streams a message back: head, then the rest of r.
func (s *interopServer) copyMessage(c *websocket.Conn, typ websocket.MessageType, head []byte, r io.Reader) error {
	w, err := c.Writer(s.ctx, typ)
	if err != nil {
		return err
	}
	if _, err := w.Write(head); err != nil {
		w.Close()
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// browserVerdict is what the page POSTs to /result.
type browserVerdict struct {
	OK          bool            `json:"ok"`
	Error       string          `json:"error"`
	Steps       []string        `json:"steps"`
	Extensions  string          `json:"extensions"`
	ClientClose json.RawMessage `json:"clientClose"`
	ServerClose json.RawMessage `json:"serverClose"`
	UserAgent   string          `json:"userAgent"`
}

// TestInteropBrowser serves internal/interop/browser.html to headless
// Chromium, whose JavaScript echoes text, ArrayBuffer, Blob and typed array
// messages of 0 B to 4 MiB through our server, answers our ping, closes with
// 4000 and a reason, and sees the close we start on a second connection. The
// origin check stays on: page and socket are same-origin.
func TestInteropBrowser(t *testing.T) {
	setups := []struct {
		name  string
		comp  *websocket.CompressionOptions
		tls   bool
		serve bool // websocket.Serve answers the page's requests, not net/http
	}{
		{name: "plain"},
		{name: "deflate", comp: &websocket.CompressionOptions{}, serve: true},
		{name: "deflate-takeover", comp: &websocket.CompressionOptions{ContextTakeover: true}},
		{name: "wss-deflate-takeover", comp: &websocket.CompressionOptions{ContextTakeover: true}, tls: true, serve: true},
	}
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := interop.Chromium(); err != nil {
				interop.Missing(t, "Chromium", err)
			}
			ctx := interopContext(t)
			srv := newInteropServer(ctx, t)
			srv.opts = &websocket.AcceptOptions{Compression: s.comp}
			srv.limit = 8 << 20
			verdicts := make(chan browserVerdict, 1)
			mux := http.NewServeMux()
			mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				io.WriteString(w, interop.BrowserPage)
			})
			mux.HandleFunc("POST /result", func(w http.ResponseWriter, r *http.Request) {
				var v browserVerdict
				if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&v); err != nil {
					v = browserVerdict{Error: "bad verdict: " + err.Error()}
				}
				select {
				case verdicts <- v:
				default:
				}
				w.WriteHeader(http.StatusNoContent)
			})
			mux.HandleFunc("GET /ws/echo", srv.browserEcho)
			mux.HandleFunc("GET /ws/server-close", func(w http.ResponseWriter, r *http.Request) {
				srv.handlers.Add(1)
				defer srv.handlers.Done()
				if c := srv.accept(w, r); c != nil {
					srv.record(&srv.closes, c.Close(interop.BrowserServerCloseCode, interop.BrowserServerCloseReason))
				}
			})
			wsURL, _ := srv.start(t, mux, s.tls, s.serve)
			pageURL := "http" + strings.TrimPrefix(wsURL, "ws") + "/page"

			browser := interop.StartChromium(t, pageURL, s.tls)
			var v browserVerdict
			select {
			case v = <-verdicts:
			case <-browser.Exited():
				t.Fatalf("Chromium exited before the page reported: %v\n%s", browser.ExitErr(), browser.Log())
			case <-ctx.Done():
				t.Fatalf("no verdict from the page within %v\n%s", interopTimeout, browser.Log())
			}
			browser.Stop(0)
			t.Logf("%s; extensions %q", v.UserAgent, v.Extensions)
			if !v.OK {
				t.Errorf("page failed: %s\nsteps passed: %s\nclient close %s, server close %s",
					v.Error, strings.Join(v.Steps, ", "), v.ClientClose, v.ServerClose)
			}
			checkExtensions(t, v.Extensions, interopSetup{deflate: s.comp != nil,
				noTakeover: s.comp != nil && !s.comp.ContextTakeover})

			srv.waitHandlers(t)
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if len(srv.ends) != 1 {
				t.Fatalf("%d echo connections ended, want 1: %v", len(srv.ends), srv.ends)
			}
			var ce websocket.CloseError
			if err := srv.ends[0]; !errors.As(err, &ce) || ce.Code != interop.BrowserClientCloseCode || ce.Reason != interop.BrowserClientCloseReason {
				t.Errorf("echo connection ended with %v, want CloseError %d %q", err, interop.BrowserClientCloseCode, interop.BrowserClientCloseReason)
			}
			if len(srv.pingErrs) != 1 || srv.pingErrs[0] != nil {
				t.Errorf("our pings: %v, want one answered", srv.pingErrs)
			}
			if len(srv.closes) != 1 || srv.closes[0] != nil {
				t.Errorf("our Close results: %v, want one nil", srv.closes)
			}
		})
	}
}

// pingForPeer pings c for a peer that asked with "ping-me", while the read
// loop goes on, and reports the outcome to the peer as "pong-ok" or
// "pong-failed: ...".
func (s *interopServer) pingForPeer(c *websocket.Conn, pinging *sync.WaitGroup) {
	pinging.Add(1)
	go func() {
		defer pinging.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
		defer cancel()
		err := c.Ping(ctx)
		s.record(&s.pingErrs, err)
		reply := "pong-ok"
		if err != nil {
			reply = "pong-failed: " + err.Error()
		}
		if err := c.Write(s.ctx, websocket.MessageText, []byte(reply)); err != nil {
			s.fail("writing the ping result: %v", err)
		}
	}()
}

// closeAsAsked closes c as a peer's "close:<code>:<reason>" message asks.
func (s *interopServer) closeAsAsked(c *websocket.Conn, msg []byte) {
	codeStr, reason, _ := strings.Cut(string(msg[len("close:"):]), ":")
	code, _ := strconv.Atoi(codeStr)
	s.record(&s.closes, c.Close(websocket.StatusCode(code), reason))
}

// browserEcho echoes messages for the browser page, with the requests of
// scriptedEcho.
func (s *interopServer) browserEcho(w http.ResponseWriter, r *http.Request) {
	s.scriptedEcho(w, r, func(err error) { s.record(&s.ends, err) })
}

// scriptedEcho accepts the request and echoes every message with its type
// until the connection ends, which it reports to ended. The text "ping-me"
// makes it ping the peer while it goes on reading, and then report
// "pong-ok" or "pong-failed: ..."; the text "close:<code>:<reason>" makes
// it close with that code and reason.
func (s *interopServer) scriptedEcho(w http.ResponseWriter, r *http.Request, ended func(error)) {
	s.handlers.Add(1)
	defer s.handlers.Done()
	var pinging sync.WaitGroup
	defer pinging.Wait()
	c := s.accept(w, r)
	if c == nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, msg, err := c.Read(s.ctx)
		if err != nil {
			ended(err)
			return
		}
		if typ == websocket.MessageText && string(msg) == "ping-me" {
			s.pingForPeer(c, &pinging)
			continue
		}
		if typ == websocket.MessageText && bytes.HasPrefix(msg, []byte("close:")) {
			s.closeAsAsked(c, msg)
			return
		}
		if err := c.Write(s.ctx, typ, msg); err != nil {
			s.fail("echo: %v", err)
			return
		}
	}
}

// interopPayload returns a deterministic message of n bytes: valid UTF-8
// mixing 1- to 4-byte characters for text, pseudo-random bytes for binary.
// Payloads are shared between tests and must not be modified.
func interopPayload(typ websocket.MessageType, n int) []byte {
	key := payloadKey{typ, n}
	payloadsMu.Lock()
	e, ok := payloads[key]
	if !ok {
		e = &payloadEntry{}
		payloads[key] = e
	}
	payloadsMu.Unlock()
	e.once.Do(func() {
		// Large payloads repeat a 1 MiB block: far faster to make under
		// the race detector, and no easier to compress, as deflate looks
		// back only 32 KiB.
		const block = 1 << 20
		if n <= block {
			e.b = makePayload(typ, n, uint32(n)*2+uint32(typ))
			return
		}
		b := make([]byte, 0, n)
		for len(b)+block <= n {
			b = append(b, interopPayload(typ, block)...)
		}
		e.b = append(b, interopPayload(typ, n-len(b))...)
	})
	return e.b
}

type payloadKey struct {
	typ websocket.MessageType
	n   int
}

type payloadEntry struct {
	once sync.Once
	b    []byte
}

var (
	payloadsMu sync.Mutex
	payloads   = map[payloadKey]*payloadEntry{}
)

var interopChars = []string{"a", "Z", "0", " ", "~", "é", "ß", "Ж", "ع", "€", "中", "✓", "😀", "🚀", "𝄞"}

func makePayload(typ websocket.MessageType, n int, seed uint32) []byte {
	x := seed | 1
	next := func() uint32 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		return x
	}
	b := make([]byte, 0, n)
	if typ == websocket.MessageBinary {
		for len(b) < n {
			b = append(b, byte(next()))
		}
		return b
	}
	for len(b) < n {
		c := interopChars[next()%uint32(len(interopChars))]
		if len(b)+len(c) > n {
			c = "z"
		}
		b = append(b, c...)
	}
	return b
}

// interopDiff describes how got differs from want, or returns "".
func interopDiff(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("got %d bytes, want %d; first difference at byte %d", len(got), len(want), i)
}

// interopCert is a self-signed certificate for 127.0.0.1 and localhost.
type interopCert struct {
	certPEM, keyPEM []byte
	cert            tls.Certificate
	pool            *x509.CertPool
}

var (
	interopCertOnce sync.Once
	interopCertVal  *interopCert
	interopCertErr  error
)

func interopTLS(t *testing.T) *interopCert {
	t.Helper()
	interopCertOnce.Do(func() { interopCertVal, interopCertErr = newInteropCert() })
	if interopCertErr != nil {
		t.Fatalf("making a test certificate: %v", interopCertErr)
	}
	return interopCertVal
}

func newInteropCert() (*interopCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "duplex interop test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	c := &interopCert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pool:    x509.NewCertPool(),
	}
	if c.cert, err = tls.X509KeyPair(c.certPEM, c.keyPEM); err != nil {
		return nil, err
	}
	if !c.pool.AppendCertsFromPEM(c.certPEM) {
		return nil, errors.New("cannot add the certificate to a pool")
	}
	return c, nil
}

// files writes the certificate and key as PEM files for a peer.
func (c *interopCert) files(t *testing.T) (certFile, keyFile string) {
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, c.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
