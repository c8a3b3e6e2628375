package websocket_test

// Interoperability over HTTP/2 (RFC 8441): Accept serving WebSockets opened
// with extended CONNECT by Node's http2 module and by headless Chromium, on
// a TLS server that speaks both HTTP/2 and HTTP/1.1.
//
// net/http's HTTP/2 server refuses extended CONNECT unless the environment
// variable GODEBUG contains http2xconnect=1 when the process starts, which a
// test cannot arrange for itself. So each test runs itself again in a child
// test binary with that setting (see inH2Child), and the child does the work.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
	"github.com/duplex-go/websocket/internal/interop"
)

// h2ChildEnv names the test that a child test binary runs; see inH2Child.
const h2ChildEnv = "DUPLEX_H2_CHILD"

// h2ChildTimeout bounds a child test binary. Its test's own deadlines
// (interopTimeout) are shorter, so that it ends its peers itself.
const h2ChildTimeout = 3 * time.Minute

// inH2Child reports whether this process is the child test binary that runs
// t with HTTP/2 extended CONNECT switched on in net/http; the test then goes
// on. Otherwise it runs t in such a child, bounded in time and in a process
// group of its own, passes on its output and its verdict, and returns false:
// the test returns.
func inH2Child(t *testing.T) bool {
	t.Helper()
	if os.Getenv(h2ChildEnv) == t.Name() {
		if !strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1") {
			t.Fatalf("child test binary without GODEBUG=http2xconnect=1 (GODEBUG=%q)", os.Getenv("GODEBUG"))
		}
		return true
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary: %v", err)
	}
	godebug := "http2xconnect=1"
	if v := os.Getenv("GODEBUG"); v != "" {
		godebug = v + "," + godebug
	}
	ctx, cancel := context.WithTimeout(context.Background(), h2ChildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^"+regexp.QuoteMeta(t.Name())+"$",
		"-test.v", "-test.count=1", "-test.timeout="+(h2ChildTimeout-30*time.Second).String())
	cmd.Env = append(os.Environ(), "GODEBUG="+godebug, h2ChildEnv+"="+t.Name())
	interop.OwnGroup(cmd)
	cmd.Cancel = func() error { return interop.KillGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("child test binary (GODEBUG=%s, %v):\n%s", godebug, time.Since(start).Round(time.Millisecond),
		strings.TrimRight(out.String(), "\n"))
	switch log := out.String(); {
	case err != nil:
		t.Fatalf("child test binary: %v", err)
	case strings.Contains(log, "--- SKIP: "+t.Name()):
		t.Skip("skipped in the child test binary")
	case !strings.Contains(log, "--- PASS: "+t.Name()):
		t.Fatalf("the child test binary did not run %s", t.Name())
	}
	return false
}

// h2Arrival is how a WebSocket handshake reached the server.
type h2Arrival struct {
	path, proto, method, protocol, alpn string
}

func (a h2Arrival) String() string {
	return fmt.Sprintf("%s %s %s (:protocol %q, ALPN %q)", a.proto, a.method, a.path, a.protocol, a.alpn)
}

func (a h2Arrival) overHTTP2() bool {
	return a.proto == "HTTP/2.0" && a.method == http.MethodConnect && a.protocol == "websocket" && a.alpn == "h2"
}

func (a h2Arrival) overHTTP1() bool {
	return a.proto == "HTTP/1.1" && a.method == http.MethodGet && a.protocol == "" && a.alpn == "http/1.1"
}

// h2Server is an HTTPS server that speaks HTTP/2 (with extended CONNECT) and
// HTTP/1.1, with the interop echo handlers, and that records how each
// WebSocket arrived and how each echo connection ended, by path. Its
// ReadTimeout and WriteTimeout are a second: a WebSocket must outlive them.
type h2Server struct {
	*interopServer
	url string // https://127.0.0.1:port

	recMu    sync.Mutex
	arrivals []h2Arrival
	endsAt   map[string][]error // by path, from s.echo
}

// h2ServerTimeout is the server's ReadTimeout and WriteTimeout.
const h2ServerTimeout = time.Second

// newH2Server starts an h2Server whose routes are set by routes, or are
// just its echo at /ws/echo when routes is nil.
func newH2Server(ctx context.Context, t *testing.T, opts *websocket.AcceptOptions, routes func(*h2Server, *http.ServeMux)) *h2Server {
	s := &h2Server{interopServer: newInteropServer(ctx, t), endsAt: map[string][]error{}}
	s.opts = opts
	s.limit = 8 << 20
	mux := http.NewServeMux()
	// No method in the patterns: a WebSocket is a GET over HTTP/1.1 and
	// a CONNECT over HTTP/2.
	if routes == nil {
		mux.HandleFunc("/ws/echo", s.ws(s.echo))
	} else {
		routes(s, mux)
	}
	ts := httptest.NewUnstartedServer(mux)
	ts.EnableHTTP2 = true
	ts.TLS = &tls.Config{
		Certificates: []tls.Certificate{interopTLS(t).cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	ts.Config.ReadTimeout = h2ServerTimeout
	ts.Config.WriteTimeout = h2ServerTimeout
	ts.StartTLS()
	t.Cleanup(ts.Close)
	s.url = ts.URL
	return s
}

// ws records how a WebSocket handshake arrived, then runs h.
func (s *h2Server) ws(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := h2Arrival{path: r.URL.Path, proto: r.Proto, method: r.Method, protocol: r.Header.Get(":protocol")}
		if r.TLS != nil {
			a.alpn = r.TLS.NegotiatedProtocol
		}
		s.recMu.Lock()
		s.arrivals = append(s.arrivals, a)
		s.recMu.Unlock()
		h(w, r)
	}
}

func (s *h2Server) ended(path string, err error) {
	s.recMu.Lock()
	s.endsAt[path] = append(s.endsAt[path], err)
	s.recMu.Unlock()
}

// echo is scriptedEcho, recording how each connection ended by its path.
func (s *h2Server) echo(w http.ResponseWriter, r *http.Request) {
	s.scriptedEcho(w, r, func(err error) { s.ended(r.URL.Path, err) })
}

// handlersReturn fails t unless every handler has returned within a few
// seconds, without help: on HTTP/2 the stream ends only when its handler
// returns.
func (s *h2Server) handlersReturn(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Errorf("handlers still running 5 s after the clients were done")
	}
}

// checkArrivals fails t unless n WebSockets arrived and over returns true
// for each.
func (s *h2Server) checkArrivals(t *testing.T, n int, over func(h2Arrival) bool, want string) {
	t.Helper()
	s.recMu.Lock()
	defer s.recMu.Unlock()
	bad := 0
	for _, a := range s.arrivals {
		if !over(a) {
			bad++
			t.Errorf("WebSocket arrived as %v, want %s", a, want)
		}
	}
	if len(s.arrivals) != n {
		t.Errorf("%d WebSockets arrived, want %d: %v", len(s.arrivals), n, s.arrivals)
	}
	if bad == 0 {
		paths := map[string]int{}
		for _, a := range s.arrivals {
			paths[a.path]++
		}
		t.Logf("%d WebSockets arrived, each as %s: by path %v", len(s.arrivals), want, paths)
	}
}

// checkNodeH2 checks what node_h2_peer.js printed: SETTINGS allowing
// extended CONNECT, its five WebSockets opened with 200 and the expected
// negotiation, every step passed, and each closing handshake with exactly
// one Close frame from the server, followed by the end of the stream.
func checkNodeH2(t *testing.T, p *interop.Process) {
	t.Helper()
	opens := map[string]interop.Event{}
	closed := map[string]interop.H2Closed{}
	steps, settings := 0, false
events:
	for _, e := range p.Events() {
		switch e.Event {
		case "result":
			// What follows, if anything, is the client hanging up.
			break events
		case "settings":
			settings = e.OK
		case "open":
			opens[e.Name] = e
		case "step":
			steps++
			if !e.OK {
				t.Errorf("node h2 step %s failed: %s", e.Name, e.Error)
			}
		case "closed":
			c, err := interop.ParseH2Closed(e)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			closed[c.Name] = c
		case "error", "goaway", "session-closed", "unparsed":
			t.Errorf("node h2 client: %s", e.Line)
		}
	}
	if !settings {
		t.Errorf("the node client did not see SETTINGS_ENABLE_CONNECT_PROTOCOL")
	}
	wantOpen := map[string][2]string{ // protocol, extensions
		"plain":               {"duplex.h2", ""},
		"deflate":             {"", "permessage-deflate"},
		"deflate-no-takeover": {"", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		"server-close-4001":   {"", ""},
		"server-close-1000":   {"", ""},
	}
	for name, want := range wantOpen {
		e, ok := opens[name]
		if !ok {
			t.Errorf("node h2 WebSocket %s did not open", name)
			continue
		}
		if e.Protocol != want[0] || e.Extensions != want[1] {
			t.Errorf("node h2 WebSocket %s: subprotocol %q, extensions %q; want %q, %q", name, e.Protocol, e.Extensions, want[0], want[1])
		}
	}
	wantClose := map[string]struct {
		initiator string
		code      int
		reason    string
	}{
		"plain":               {"client", interop.ClientCloseCode, ""},
		"deflate":             {"client", 1000, ""},
		"deflate-no-takeover": {"client", 1005, ""},
		"server-close-4001":   {"server", interop.ServerCloseCode, interop.ServerCloseReason},
		"server-close-1000":   {"server", 1000, ""},
	}
	var ms []string
	for name, want := range wantClose {
		c, ok := closed[name]
		if !ok {
			t.Errorf("node h2 WebSocket %s: no closing handshake", name)
			continue
		}
		if c.Initiator != want.initiator || c.Code != want.code || c.Reason != want.reason {
			t.Errorf("node h2 WebSocket %s: %s-initiated close answered %d %q, want %s-initiated %d %q",
				name, c.Initiator, c.Code, c.Reason, want.initiator, want.code, want.reason)
		}
		if c.CloseFrames != 1 || c.FramesAfterClose != 0 || !c.StreamEnded || c.RSTCode != 0 {
			t.Errorf("node h2 WebSocket %s: %d Close frames from the server, %d frames after the first, stream ended %v, RST_STREAM code %d; want 1, 0, true, 0",
				name, c.CloseFrames, c.FramesAfterClose, c.StreamEnded, c.RSTCode)
		}
		ms = append(ms, fmt.Sprintf("%s: Close frame after %d ms, stream end after %d ms", name, c.CloseFrameMS, c.EndMS))
	}
	slices.Sort(ms)
	t.Logf("node h2: %d steps passed; closing handshakes: %s", steps, strings.Join(ms, "; "))
}

// checkNodeH2Server checks the server's side of node_h2_peer.js's run,
// beyond its echo path: how the client-initiated closes ended the handlers'
// reads, the server-initiated closes, and the pings both ways.
func checkNodeH2Server(t *testing.T, s *h2Server, ends []error) {
	t.Helper()
	wantEnds := map[websocket.StatusCode]string{
		interop.ClientCloseCode:       "bye from node h2 ✓",
		websocket.StatusNormalClosure: "",
		websocket.StatusNoStatusRcvd:  "",
	}
	for _, err := range ends {
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Errorf("a node h2 echo connection ended with %v, want a CloseError", err)
			continue
		}
		reason, ok := wantEnds[ce.Code]
		if !ok || ce.Reason != reason {
			t.Errorf("a node h2 echo connection ended with %v", err)
		}
		delete(wantEnds, ce.Code)
	}
	for code, reason := range wantEnds {
		t.Errorf("no node h2 echo connection ended with %d %q; ends: %v", code, reason, ends)
	}
	s.interopServer.mu.Lock()
	defer s.interopServer.mu.Unlock()
	if len(s.closes) != 2 || s.closes[0] != nil || s.closes[1] != nil {
		t.Errorf("our Close results: %v, want two nil", s.closes)
	}
	if len(s.pingErrs) != 3 || slices.ContainsFunc(s.pingErrs, func(err error) bool { return err != nil }) {
		t.Errorf("our pings: %v, want three answered", s.pingErrs)
	}
	pings := map[string]int{}
	for _, p := range s.pings {
		pings[p]++
	}
	if pings["between fragments"] != 6 || pings["ping from node h2 ✓"] != 3 {
		t.Errorf("pings from node: %v, want 6 between fragments and 3 on their own", pings)
	}
}

// nodeH2Options is what the server offers node_h2_peer.js: the subprotocol
// it asks for, and compression with context takeover for every message.
var nodeH2Options = &websocket.AcceptOptions{
	Subprotocols: []string{"duplex.h2"},
	Compression:  &websocket.CompressionOptions{ContextTakeover: true, Threshold: -1},
}

// TestHTTP2Node opens WebSockets over HTTP/2 from Node's http2 module, with
// the framing and compression of node_h2_peer.js: three at once on one
// connection (no extension, permessage-deflate with and without context
// takeover), each echoing text and binary messages of 0 B to 4 MiB (1 MiB
// compressed), fragmented messages with a ping between the fragments, a
// ping each way, a message after idling past the server's ReadTimeout and
// WriteTimeout, then a client-initiated close (4000 with a reason, 1000, no
// code); and two server-initiated closes (4001 with a reason, 1000). Each
// closing handshake must bring exactly one Close frame from the server and
// then the end of the stream, and every handler must return by itself.
func TestHTTP2Node(t *testing.T) {
	t.Parallel()
	interop.Require(t, interop.Node)
	if !inH2Child(t) {
		return
	}
	ctx := interopContext(t)
	srv := newH2Server(ctx, t, nodeH2Options, nil)
	start := time.Now()
	p := interop.StartNodeH2Client(t, srv.url, interopTimeout, "--insecure",
		"--idle", strconv.Itoa(int(2*h2ServerTimeout/time.Millisecond)), "--max-size", strconv.Itoa(4<<20))
	res, err := p.WaitEvent(ctx, func(e interop.Event) bool { return e.Event == "result" })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node h2 client done in %v", time.Since(start).Round(time.Millisecond))
	if !res.OK {
		t.Errorf("node h2 client failed: %s\n%s", res.Error, p.Log())
	}
	checkNodeH2(t, p)
	srv.handlersReturn(t)
	srv.waitHandlers(t)
	srv.checkArrivals(t, 5, h2Arrival.overHTTP2, "HTTP/2.0 CONNECT with :protocol websocket over ALPN h2")
	srv.recMu.Lock()
	ends := srv.endsAt["/ws/echo"]
	srv.recMu.Unlock()
	checkNodeH2Server(t, srv, ends)
}

// TestHTTP2Browser serves internal/interop/browser_h2.html to headless
// Chromium over HTTP/2, and then, on the same connection,
// internal/interop/browser.html, the page of TestInteropBrowser. Every
// WebSocket the pages open must reach the handler as an HTTP/2 extended
// CONNECT. The H2 page echoes messages on four WebSockets at once, echoes
// again after idling past the server's ReadTimeout and WriteTimeout,
// closes with 1000, without a code, and two at once, sees our Close with
// 1000 and a reason, and sees a handler that returns without a closing
// handshake as 1006; each closure but that one must be clean (wasClean).
// browser.html's checks are those of TestInteropBrowser.
func TestHTTP2Browser(t *testing.T) {
	t.Parallel()
	if _, _, err := interop.Chromium(); err != nil {
		interop.Missing(t, "Chromium", err)
	}
	if !inH2Child(t) {
		return
	}
	ctx := interopContext(t)
	verdicts := make(chan browserVerdict, 1)
	h2Verdicts := make(chan h2BrowserVerdict, 1)
	srv := newH2Server(ctx, t, &websocket.AcceptOptions{
		Compression: &websocket.CompressionOptions{ContextTakeover: true},
	}, func(s *h2Server, mux *http.ServeMux) {
		page := func(body string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				io.WriteString(w, body)
			}
		}
		mux.HandleFunc("GET /h2page", page(interop.BrowserH2Page))
		mux.HandleFunc("GET /page", page(interop.BrowserPage))
		mux.HandleFunc("POST /result-h2", postedVerdict(h2Verdicts))
		mux.HandleFunc("POST /result", postedVerdict(verdicts))
		mux.HandleFunc("/ws/h2/echo", s.ws(s.echo))
		mux.HandleFunc("/ws/h2/server-close", s.ws(func(w http.ResponseWriter, r *http.Request) {
			s.handlers.Add(1)
			defer s.handlers.Done()
			if c := s.accept(w, r); c != nil {
				s.record(&s.closes, c.Close(interop.BrowserH2ServerCloseCode, interop.BrowserH2ServerCloseReason))
			}
		}))
		mux.HandleFunc("/ws/h2/drop", s.ws(func(w http.ResponseWriter, r *http.Request) {
			s.handlers.Add(1)
			defer s.handlers.Done()
			if c := s.accept(w, r); c != nil {
				c.CloseNow()
			}
		}))
		// browser.html's endpoints, as TestInteropBrowser serves them.
		mux.HandleFunc("/ws/echo", s.ws(s.browserEcho))
		mux.HandleFunc("/ws/server-close", s.ws(func(w http.ResponseWriter, r *http.Request) {
			s.handlers.Add(1)
			defer s.handlers.Done()
			if c := s.accept(w, r); c != nil {
				s.record(&s.closes, c.Close(interop.BrowserServerCloseCode, interop.BrowserServerCloseReason))
			}
		}))
	})
	start := time.Now()
	browser := interop.StartChromium(t, srv.url+"/h2page?idle="+strconv.Itoa(int(2*h2ServerTimeout/time.Millisecond)), true)
	var h2v h2BrowserVerdict
	var v browserVerdict
	for got := 0; got < 2; got++ {
		select {
		case h2v = <-h2Verdicts:
			t.Logf("H2 page verdict after %v", time.Since(start).Round(time.Millisecond))
		case v = <-verdicts:
			t.Logf("browser.html verdict after %v", time.Since(start).Round(time.Millisecond))
		case <-browser.Exited():
			t.Fatalf("Chromium exited before the pages reported: %v\n%s", browser.ExitErr(), browser.Log())
		case <-ctx.Done():
			t.Fatalf("no verdicts from the pages within %v\n%s", interopTimeout, browser.Log())
		}
	}
	browser.Stop(0)
	t.Logf("%s; page over %q; extensions %q", h2v.UserAgent, h2v.NextHopProtocol, h2v.Extensions)
	t.Logf("H2 page steps: %s", strings.Join(h2v.Steps, ", "))
	t.Logf("browser.html steps: %s", strings.Join(v.Steps, ", "))
	t.Logf("H2 page close events: %s; browser.html: client close %s, server close %s", h2v.Closes, v.ClientClose, v.ServerClose)
	if !h2v.OK {
		t.Errorf("H2 page failed: %s\nsteps passed: %s\ncloses: %s", h2v.Error, strings.Join(h2v.Steps, ", "), h2v.Closes)
	}
	if !v.OK {
		t.Errorf("browser.html failed: %s\nsteps passed: %s\nclient close %s, server close %s",
			v.Error, strings.Join(v.Steps, ", "), v.ClientClose, v.ServerClose)
	}
	checkExtensions(t, h2v.Extensions, interopSetup{deflate: true})
	checkExtensions(t, v.Extensions, interopSetup{deflate: true})

	srv.handlersReturn(t)
	srv.waitHandlers(t)
	// The H2 page opens 4 echo sockets, one to server-close and one to
	// drop; browser.html one echo and one server-close.
	srv.checkArrivals(t, 8, h2Arrival.overHTTP2, "HTTP/2.0 CONNECT with :protocol websocket over ALPN h2")

	srv.recMu.Lock()
	h2Ends := srv.endsAt["/ws/h2/echo"]
	srv.recMu.Unlock()
	var codes []string
	for _, err := range h2Ends {
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Errorf("an H2 page echo connection ended with %v, want a CloseError", err)
			continue
		}
		codes = append(codes, fmt.Sprintf("%d %q", int(ce.Code), ce.Reason))
	}
	slices.Sort(codes)
	want := []string{`1000 ""`, `1000 "done ✓"`, `1005 ""`, `4002 "also done"`}
	if !slices.Equal(codes, want) {
		t.Errorf("H2 page echo connections ended with %v, want %v", codes, want)
	}
	// browserEcho records how its connections end in srv.interopServer.
	srv.interopServer.mu.Lock()
	defer srv.interopServer.mu.Unlock()
	if ends := srv.interopServer.ends; len(ends) != 1 {
		t.Errorf("%d browser.html echo connections ended, want 1: %v", len(ends), ends)
	} else if ce := (websocket.CloseError{}); !errors.As(ends[0], &ce) || ce.Code != interop.BrowserClientCloseCode || ce.Reason != interop.BrowserClientCloseReason {
		t.Errorf("browser.html echo connection ended with %v, want CloseError %d %q", ends[0], interop.BrowserClientCloseCode, interop.BrowserClientCloseReason)
	}
	if len(srv.pingErrs) != 1 || srv.pingErrs[0] != nil {
		t.Errorf("our pings: %v, want one answered", srv.pingErrs)
	}
	if len(srv.closes) != 2 || srv.closes[0] != nil || srv.closes[1] != nil {
		t.Errorf("our Close results: %v, want two nil", srv.closes)
	}
}

// h2BrowserVerdict is what browser_h2.html POSTs to /result-h2.
type h2BrowserVerdict struct {
	OK              bool            `json:"ok"`
	Error           string          `json:"error"`
	Steps           []string        `json:"steps"`
	Extensions      string          `json:"extensions"`
	NextHopProtocol string          `json:"nextHopProtocol"`
	Closes          json.RawMessage `json:"closes"`
	UserAgent       string          `json:"userAgent"`
}

// postedVerdict decodes a page's verdict and passes the first one on.
func postedVerdict[V any](verdicts chan<- V) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var v V
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&v); err != nil {
			// A broken verdict still ends the wait; its zero OK fails.
			var zero V
			v = zero
		}
		select {
		case verdicts <- v:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// TestHTTP2AndHTTP1Together serves our own Dial client (HTTP/1.1 Upgrade
// over TLS: Dial offers only http/1.1 in ALPN) and Node's HTTP/2 client at
// the same time from one TLS server: the Dial connection is open before
// the Node client starts and echoes messages all the while it runs.
func TestHTTP2AndHTTP1Together(t *testing.T) {
	t.Parallel()
	interop.Require(t, interop.Node)
	if !inH2Child(t) {
		return
	}
	ctx := interopContext(t)
	srv := newH2Server(ctx, t, nodeH2Options, nil)
	wsURL := "wss" + strings.TrimPrefix(srv.url, "https") + "/ws/echo"
	c, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{
		TLSConfig:   &tls.Config{RootCAs: interopTLS(t).pool},
		Compression: &websocket.CompressionOptions{ContextTakeover: true},
	})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.ProtoMajor != 1 {
		t.Fatalf("Dial's handshake: %s %s, want HTTP/1.1 101", resp.Proto, resp.Status)
	}

	p := interop.StartNodeH2Client(t, srv.url, interopTimeout, "--insecure", "--max-size", strconv.Itoa(1<<20))
	if _, err := p.WaitEvent(ctx, func(e interop.Event) bool { return e.Event == "open" }); err != nil {
		t.Fatal(err)
	}
	nodeDone := make(chan interop.Event, 1)
	go func() {
		res, err := p.WaitEvent(ctx, func(e interop.Event) bool { return e.Event == "result" })
		if err != nil {
			res = interop.Event{Error: err.Error()}
		}
		nodeDone <- res
	}()
	// Echo over HTTP/1.1 until the Node client is done, at least once.
	sizes := []int{0, 1, 125, 126, 65536, 1 << 20}
	echoes := 0
	var res interop.Event
echo:
	for i := 0; ; i++ {
		typ := websocket.MessageText
		if i%2 == 1 {
			typ = websocket.MessageBinary
		}
		msg := interopPayload(typ, sizes[i%len(sizes)])
		if err := c.Write(ctx, typ, msg); err != nil {
			t.Fatalf("Dial connection, write %d: %v", i, err)
		}
		gotTyp, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("Dial connection, read %d: %v", i, err)
		}
		if d := interopDiff(got, msg); gotTyp != typ || d != "" {
			t.Fatalf("Dial connection, echo %d: type %v, want %v; %s", i, gotTyp, typ, d)
		}
		echoes++
		select {
		case res = <-nodeDone:
			break echo
		default:
		}
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	go c.Read(ctx) // reads the pong, then the Close answer
	if err := c.Ping(pingCtx); err != nil {
		t.Errorf("Dial connection, ping: %v", err)
	}
	if err := c.Close(interop.ClientCloseCode, "bye from Dial"); err != nil {
		t.Errorf("Dial connection, Close: %v", err)
	}
	t.Logf("%d echoes over HTTP/1.1 while the node h2 client ran", echoes)

	if !res.OK {
		t.Errorf("node h2 client failed: %s\n%s", res.Error, p.Log())
	}
	checkNodeH2(t, p)
	srv.handlersReturn(t)
	srv.waitHandlers(t)

	srv.recMu.Lock()
	var h1, h2 []h2Arrival
	for _, a := range srv.arrivals {
		switch {
		case a.overHTTP1():
			h1 = append(h1, a)
		case a.overHTTP2():
			h2 = append(h2, a)
		default:
			t.Errorf("WebSocket arrived as %v", a)
		}
	}
	var ends, nodeEnds []error
	for _, err := range srv.endsAt["/ws/echo"] {
		var ce websocket.CloseError
		if errors.As(err, &ce) && ce.Reason == "bye from Dial" {
			ends = append(ends, err)
		} else {
			nodeEnds = append(nodeEnds, err)
		}
	}
	srv.recMu.Unlock()
	if len(h1) != 1 || len(h2) != 5 {
		t.Errorf("WebSockets arrived over HTTP/1.1: %v; over HTTP/2: %v; want 1 and 5", h1, h2)
	} else {
		t.Logf("WebSockets arrived as %v and 5 × %v", h1[0], h2[0])
	}
	if len(ends) != 1 || websocket.CloseStatus(ends[0]) != interop.ClientCloseCode {
		t.Errorf("the Dial connection's handler saw %v, want one CloseError %d", ends, interop.ClientCloseCode)
	}
	checkNodeH2Server(t, srv, nodeEnds)
}
