package websocket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests hold Serve to its doc comment: the one request a connection
// brings is answered by a net/http handler, Accept takes the connection
// without net/http, every other response is closed after, and whatever a
// client sends, the connection ends within bounded time and memory.
//
// Every connection a test starts through Serve ends with something the
// test observes from the server (a response byte, a handler's signal), so
// that the tests which shorten serveTimeout, through serveOne, race with no
// serveConn still reading it.

// serveWait bounds every wait in these tests.
const serveWait = 5 * time.Second

// upgradeFields are the header fields of a valid opening handshake
// (RFC 6455 §4.1, the key from §1.3).
const upgradeFields = "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

// upgradeRequest is a valid opening handshake for Host a.test.
const upgradeRequest = "GET / HTTP/1.1\r\nHost: a.test\r\n" + upgradeFields + "\r\n"

// startServe runs Serve with h on a loopback listener and returns its
// address. Cleanup closes the listener and checks that Serve then returns
// net.ErrClosed.
func startServe(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startServeOn(t, ln, h)
	return ln.Addr().String()
}

func startServeOn(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- Serve(ln, h) }()
	t.Cleanup(func() {
		ln.Close()
		select {
		case err := <-served:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("after ln.Close Serve returned %v, want net.ErrClosed", err)
			}
		case <-time.After(serveWait):
			t.Errorf("Serve did not return within %v of ln.Close", serveWait)
		}
	})
}

// serveOne serves one loopback connection with serveConn, as Serve does
// each connection it accepts, and returns the client's end; wrap, if not
// nil, wraps the server's end (in TLS, say). done is closed when serveConn
// returns. Cleanup closes the client's end and waits for serveConn.
func serveOne(t *testing.T, h http.Handler, wrap func(net.Conn) net.Conn) (client *net.TCPConn, done <-chan struct{}) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	if wrap != nil {
		server = wrap(server)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		serveConn(server, h)
	}()
	t.Cleanup(func() {
		client.Close()
		select {
		case <-ended:
		case <-time.After(serveWait):
			t.Errorf("serveConn did not return within %v", serveWait)
		}
	})
	_ = client.SetDeadline(time.Now().Add(serveWait))
	return client, ended
}

// setServeTimeout sets serveTimeout for the rest of a test. Call it before
// serveOne: serveOne's cleanup, which runs first, waits for serveConn, so
// nothing reads the variable when it is restored.
func setServeTimeout(t *testing.T, d time.Duration) {
	old := serveTimeout
	serveTimeout = d
	t.Cleanup(func() { serveTimeout = old })
}

// dialRaw connects to addr for a client that speaks HTTP by hand, with
// every wait bounded by serveWait; the test closes the connection.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(serveWait))
	return nc
}

// served is what a raw client got in answer to its request.
type served struct {
	resp  *http.Response
	body  string
	wire  string // every byte the server sent
	local string // the client's address
}

// exchange sends request, as is, on a new connection to addr and reads the
// response. If closes, the server must close the connection right after
// the response.
func exchange(t *testing.T, addr, request string, closes bool) served {
	t.Helper()
	nc := dialRaw(t, addr)
	if _, err := io.WriteString(nc, request); err != nil {
		t.Fatal(err)
	}
	var wire bytes.Buffer
	br := bufio.NewReader(io.TeeReader(nc, &wire))
	method, _, _ := strings.Cut(request, " ")
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v; the server sent %q", err, wire.String())
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v; the server sent %q", err, wire.String())
	}
	if closes {
		if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("after the response: read %d bytes, %v; want the connection closed. The server sent %q",
				n, err, wire.String())
		}
	}
	return served{resp: resp, body: string(body), wire: wire.String(), local: nc.LocalAddr().String()}
}

// readAll sends request on a new connection to addr and returns all the
// server sends before it closes the connection, gracefully or with a reset.
func readAll(t *testing.T, addr, request string) string {
	t.Helper()
	nc := dialRaw(t, addr)
	if _, err := io.WriteString(nc, request); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(nc)
	if isTimeout(err) { // a reset is a close too
		t.Fatalf("the server did not close the connection: %v (it sent %q)", err, b)
	}
	return string(b)
}

// checkClosingResponse checks what every response other than an upgrade
// carries: HTTP/1.1, a Date and "Connection: close".
func checkClosingResponse(t *testing.T, s served) {
	t.Helper()
	if !strings.HasPrefix(s.wire, "HTTP/1.1 ") {
		t.Errorf("status line %q, want HTTP/1.1", strings.SplitN(s.wire, "\r\n", 2)[0])
	}
	// ReadResponse takes "Connection: close" out of the header, into Close.
	if got := wireHeader(t, s.wire).Values("Connection"); len(got) != 1 || got[0] != "close" || !s.resp.Close {
		t.Errorf("Connection fields %q, want one: close", got)
	}
	date := s.resp.Header.Values("Date")
	if len(date) != 1 {
		t.Fatalf("Date fields %q, want one", date)
	}
	if d, err := http.ParseTime(date[0]); err != nil || time.Since(d).Abs() > time.Minute {
		t.Errorf("Date %q (%v), want the time now in HTTP format", date[0], err)
	}
}

// wireHeader returns the header fields of the response on the wire, all of
// them: http.ReadResponse removes some.
func wireHeader(t *testing.T, wire string) http.Header {
	t.Helper()
	head, _, _ := strings.Cut(wire, "\r\n\r\n")
	_, fields, _ := strings.Cut(head, "\r\n")
	h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(fields + "\r\n\r\n"))).ReadMIMEHeader()
	if err != nil {
		t.Fatalf("the response's head %q: %v", head, err)
	}
	return http.Header(h)
}

// serveFrame is a client's frame of a whole message: masked, final.
func serveFrame(op Opcode, payload []byte) []byte {
	return maskedFrame(Header{Fin: true, Opcode: op}, payload)
}

// readServerFrame reads one frame from a server: unmasked, whole.
func readServerFrame(t *testing.T, br *bufio.Reader) (Header, []byte) {
	t.Helper()
	h, err := ReadHeader(br)
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	if h.Masked {
		t.Fatal("the server masked its frame")
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatalf("reading a payload: %v", err)
	}
	return h, p
}

// rawUpgrade writes an opening handshake with extra right behind it, in one
// write, and reads the 101 response.
func rawUpgrade(t *testing.T, nc net.Conn, request string, extra []byte) *bufio.Reader {
	t.Helper()
	if _, err := nc.Write(append([]byte(request), extra...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake response %v %v", resp.Status, resp.Header)
	}
	return br
}

// serveEcho answers c's messages with the same until the connection ends, and
// then sends how it ended.
func serveEcho(c *Conn, ended chan<- error) {
	defer c.CloseNow()
	ctx := context.Background()
	for {
		typ, msg, err := c.Read(ctx)
		if err == nil {
			err = c.Write(ctx, typ, msg)
		}
		if err != nil {
			ended <- err
			return
		}
	}
}

// accepting returns a handler that upgrades with Accept and hands the Conn
// to serve, or reports on ended why Accept refused.
func accepting(ended chan<- error, serve func(*Conn, chan<- error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, nil)
		if err != nil {
			ended <- err
			return
		}
		serve(c, ended)
	}
}

// serveAwaitEcho is serveEcho with AwaitMessage: no goroutine waits between messages.
func serveAwaitEcho(c *Conn, ended chan<- error) {
	ctx := context.Background()
	var serve func()
	serve = func() {
		typ, msg, err := c.Read(ctx)
		if err == nil {
			err = c.Write(ctx, typ, msg)
		}
		if err != nil {
			c.CloseNow()
			ended <- err
			return
		}
		c.AwaitMessage(serve)
	}
	c.AwaitMessage(serve)
}

// receive returns what ch delivers within serveWait.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(serveWait):
		t.Fatalf("no %s within %v", what, serveWait)
		panic("unreachable")
	}
}

var serveReaders = []struct {
	name  string
	serve func(*Conn, chan<- error)
}{
	{"Read", serveEcho},
	{"AwaitMessage", serveAwaitEcho},
}

// A handler behind Serve upgrades with Accept, returns, and the connection
// carries messages both ways: whole, large, empty, text and binary, with
// the server speaking first, then the close handshake of §7.
func TestServeEcho(t *testing.T) {
	for _, reader := range serveReaders {
		t.Run(reader.name, func(t *testing.T) {
			ended := make(chan error, 1)
			addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := Accept(w, r, nil)
				if err != nil {
					ended <- err
					return
				}
				if err := c.Write(context.Background(), MessageText, []byte("hello from Serve")); err != nil {
					c.CloseNow()
					ended <- err
					return
				}
				reader.serve(c, ended) // and return: the Conn lives on
			}))

			ctx, cancel := context.WithTimeout(context.Background(), serveWait)
			defer cancel()
			c, resp, err := Dial(ctx, "ws://"+addr+"/echo", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d, want 101", resp.StatusCode)
			}
			if typ, msg, err := c.Read(ctx); err != nil || typ != MessageText || string(msg) != "hello from Serve" {
				t.Fatalf("first message %v %q %v, want the server's greeting", typ, msg, err)
			}
			for _, m := range []struct {
				typ MessageType
				p   []byte
			}{
				{MessageText, []byte("one")},
				{MessageBinary, bytes.Repeat([]byte{0, 1, 2, 0xff}, 70000/4)},
				{MessageText, nil},
				{MessageBinary, []byte("two")},
			} {
				if err := c.Write(ctx, m.typ, m.p); err != nil {
					t.Fatal(err)
				}
				typ, got, err := c.Read(ctx)
				if err != nil || typ != m.typ || !bytes.Equal(got, m.p) {
					t.Fatalf("echo of a %d-byte %v message: %v, %d bytes, %v", len(m.p), m.typ, typ, len(got), err)
				}
			}
			if err := c.Close(StatusNormalClosure, "bye"); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := receive(t, ended, "end of the server's connection"); CloseStatus(err) != StatusNormalClosure {
				t.Fatalf("the server's connection ended with %v, want the client's Close 1000", err)
			}
		})
	}
}

// Frames a client sends in the same write as its request reach the server
// as its first message, whether they fit in the bytes read with the
// request or continue past them.
func TestServeFirstFrameWithRequest(t *testing.T) {
	for _, reader := range serveReaders {
		for _, size := range []int{0, 5, 125, 126, 4000, 20000} {
			t.Run(fmt.Sprintf("%s/%d", reader.name, size), func(t *testing.T) {
				ended := make(chan error, 1)
				addr := startServe(t, accepting(ended, reader.serve))
				nc := dialRaw(t, addr)

				first := bytes.Repeat([]byte("pipelined "), size/10+1)[:size]
				br := rawUpgrade(t, nc, upgradeRequest, serveFrame(OpText, first))
				if h, p := readServerFrame(t, br); h.Opcode != OpText || !bytes.Equal(p, first) {
					t.Fatalf("echo of the first message: %v, %d bytes, want text of %d", h.Opcode, len(p), size)
				}
				if _, err := nc.Write(serveFrame(OpBinary, []byte("second"))); err != nil {
					t.Fatal(err)
				}
				if h, p := readServerFrame(t, br); h.Opcode != OpBinary || string(p) != "second" {
					t.Fatalf("echo of the second message: %v %q", h.Opcode, p)
				}
				nc.Close()
				receive(t, ended, "end of the server's connection")
			})
		}
	}
}

// Responses other than an upgrade: the handler's status, fields and body,
// with a Date, "Connection: close", a sniffed Content-Type, and the
// connection closed after; no body where HEAD or the status forbids one;
// informational statuses dropped; fields that could split the response
// dropped or defused.
func TestServeResponses(t *testing.T) {
	cases := []struct {
		name    string
		method  string
		handler func(t *testing.T, w http.ResponseWriter)
		status  int
		body    string
		fields  map[string]string // fields the response has exactly once, with these values
		absent  []string          // and fields it lacks
	}{{
		name: "404 with a body",
		handler: func(t *testing.T, w http.ResponseWriter) {
			w.WriteHeader(http.StatusNotFound)
			if n, err := io.WriteString(w, "no such page\n"); n != 13 || err != nil {
				t.Errorf("Write returned %d, %v", n, err)
			}
		},
		status: 404, body: "no such page\n",
		fields: map[string]string{"Content-Type": "text/plain; charset=utf-8"},
		absent: []string{"Content-Length"}, // the close ends the body
	}, {
		name: "sniffed HTML",
		handler: func(t *testing.T, w http.ResponseWriter) {
			io.WriteString(w, "<!DOCTYPE html><p>hello")
		},
		status: 200, body: "<!DOCTYPE html><p>hello",
		fields: map[string]string{"Content-Type": "text/html; charset=utf-8"},
	}, {
		name: "the handler's Content-Type and Content-Length",
		handler: func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "{}")
		},
		status: 200, body: "{}",
		fields: map[string]string{"Content-Type": "application/json", "Content-Length": "2"},
	}, {
		name:    "nothing written",
		handler: func(t *testing.T, w http.ResponseWriter) {},
		status:  200,
		fields:  map[string]string{"Content-Length": "0"},
		absent:  []string{"Content-Type"},
	}, {
		name:    "only a status",
		handler: func(t *testing.T, w http.ResponseWriter) { w.WriteHeader(http.StatusForbidden) },
		status:  403,
		fields:  map[string]string{"Content-Length": "0"},
	}, {
		name:   "HEAD",
		method: "HEAD",
		handler: func(t *testing.T, w http.ResponseWriter) {
			if n, err := io.WriteString(w, "not sent"); n != 8 || err != nil {
				t.Errorf("Write answering HEAD returned %d, %v; want the body taken and dropped", n, err)
			}
		},
		status: 200,
		absent: []string{"Content-Length", "Content-Type"},
	}, {
		name:    "HEAD, nothing written",
		method:  "HEAD",
		handler: func(t *testing.T, w http.ResponseWriter) {},
		status:  200,
	}, {
		name: "204",
		handler: func(t *testing.T, w http.ResponseWriter) {
			w.WriteHeader(http.StatusNoContent)
			if n, err := io.WriteString(w, "x"); n != 0 || err != http.ErrBodyNotAllowed {
				t.Errorf("Write after 204 returned %d, %v; want http.ErrBodyNotAllowed", n, err)
			}
		},
		status: 204,
		absent: []string{"Content-Length", "Content-Type"},
	}, {
		name: "304",
		handler: func(t *testing.T, w http.ResponseWriter) {
			w.WriteHeader(http.StatusNotModified)
			if _, err := io.WriteString(w, "x"); err != http.ErrBodyNotAllowed {
				t.Errorf("Write after 304 returned %v; want http.ErrBodyNotAllowed", err)
			}
		},
		status: 304,
		absent: []string{"Content-Length", "Content-Type"},
	}, {
		name: "informational statuses dropped",
		handler: func(t *testing.T, w http.ResponseWriter) {
			w.WriteHeader(http.StatusContinue)
			w.WriteHeader(http.StatusSwitchingProtocols)
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, "ok")
		},
		status: 202, body: "ok",
	}, {
		name: "the first final status wins",
		handler: func(t *testing.T, w http.ResponseWriter) {
			w.WriteHeader(http.StatusTeapot)
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "short and stout")
			w.WriteHeader(http.StatusBadGateway)
		},
		status: 418, body: "short and stout",
	}, {
		name: "header injection",
		handler: func(t *testing.T, w http.ResponseWriter) {
			h := w.Header()
			h["X-Split\r\nSet-Cookie"] = []string{"a=1"}
			h["X-Lf\nSet-Cookie"] = []string{"b=2"}
			h["Set-Cookie: c=3\r\nX-A"] = []string{"x"}
			h["X-Colon:Set-Cookie"] = []string{"d=4"}
			h["X Space"] = []string{"e=5"}
			h[""] = []string{"f=6"}
			h.Set("X-Value", "ok\r\nSet-Cookie: g=7\r\n\r\n<script>")
			h.Set("X-Lf-Value", "a\nb\rc")
			io.WriteString(w, "body")
		},
		status: 200, body: "body",
		fields: map[string]string{"X-Value": "ok  Set-Cookie: g=7    <script>", "X-Lf-Value": "a b c"},
		absent: []string{"Set-Cookie", "X-A"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tc.handler(t, w)
			}))
			method := tc.method
			if method == "" {
				method = "GET"
			}
			s := exchange(t, addr, method+" / HTTP/1.1\r\nHost: a.test\r\n\r\n", true)
			checkClosingResponse(t, s)
			if s.resp.StatusCode != tc.status || s.body != tc.body {
				t.Errorf("response %d %q, want %d %q", s.resp.StatusCode, s.body, tc.status, tc.body)
			}
			for name, want := range tc.fields {
				if got := s.resp.Header.Values(name); len(got) != 1 || got[0] != want {
					t.Errorf("%s fields %q, want one: %q", name, got, want)
				}
			}
			for _, name := range tc.absent {
				if got, ok := s.resp.Header[name]; ok {
					t.Errorf("%s: %q, want no such field", name, got)
				}
			}
			head, _, _ := strings.Cut(s.wire, "\r\n\r\n")
			for _, line := range strings.Split(head, "\r\n")[1:] {
				name, _, ok := strings.Cut(line, ": ")
				if !ok || !validToken(name) || strings.ContainsAny(line, "\r\n") {
					t.Errorf("header line %q is not a field", line)
				}
			}
			if strings.Contains(s.wire, "HTTP/1.1 1") {
				t.Errorf("an informational response went out: %q", s.wire)
			}
		})
	}
}

// net/http's own client reads Serve's responses: status, body, fields, and
// that the connection is not reused.
func TestServeHTTPClient(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{} // the clients' addresses
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "<html><body>home</body></html>")
	}))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: serveWait}
	for _, want := range []struct {
		path, body, contentType string
		status                  int
	}{
		{"/missing", "404 page not found\n", "text/plain; charset=utf-8", 404},
		{"/", "<html><body>home</body></html>", "text/html; charset=utf-8", 200},
		{"/missing", "404 page not found\n", "text/plain; charset=utf-8", 404},
	} {
		resp, err := client.Get("http://" + addr + want.path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != want.status || string(body) != want.body {
			t.Fatalf("GET %s: %d %q %v, want %d %q", want.path, resp.StatusCode, body, err, want.status, want.body)
		}
		if !resp.Close || resp.Header.Get("Content-Type") != want.contentType {
			t.Errorf("GET %s: Close %v, Content-Type %q; want true, %q", want.path, resp.Close, resp.Header.Get("Content-Type"), want.contentType)
		}
		if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
			t.Errorf("GET %s: Date %q: %v", want.path, resp.Header.Get("Date"), err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 3 {
		t.Errorf("3 requests came on %d connections, want 3: one request per connection", len(conns))
	}
}

// Flush sends the head at once: the body is not buffered.
func TestServeFlush(t *testing.T) {
	sawHead := make(chan struct{})
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Early", "1")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		select {
		case <-sawHead:
		case <-time.After(serveWait):
			t.Error("the client did not see the head after Flush")
		}
		io.WriteString(w, "late body")
	}))
	nc := dialRaw(t, addr)
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	close(sawHead)
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.Header.Get("X-Early") != "1" || string(body) != "late body" {
		t.Fatalf("response %v %q %v", resp.Header, body, err)
	}
}

// The fields that frame the response are Serve's: "Connection: close"
// whatever the handler set, one Date (the handler's, if it set one), and no
// Transfer-Encoding, since Serve ends the body by closing, as net/http does
// when it cannot chunk.
func TestServeHandlerFramingFields(t *testing.T) {
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "keep-alive")
		w.Header().Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
		w.Header().Set("Transfer-Encoding", "chunked")
		io.WriteString(w, "not chunked")
	}))
	nc := dialRaw(t, addr)
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	wire, err := io.ReadAll(nc)
	if err != nil {
		t.Fatal(err)
	}
	h := wireHeader(t, string(wire))
	if got := h.Values("Connection"); len(got) != 1 || got[0] != "close" {
		t.Errorf("Connection fields %q, want one: close", got)
	}
	if got := h.Values("Date"); len(got) != 1 || got[0] != "Mon, 02 Jan 2006 15:04:05 GMT" {
		t.Errorf("Date fields %q, want the handler's alone", got)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(wire)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := io.ReadAll(resp.Body); err != nil || string(body) != "not chunked" {
		t.Errorf("a client reads the body as %q, %v; want %q", body, err, "not chunked")
	}
}

// Accept's refusals (RFC 6455 §4.2.1, §4.2.2) go out through Serve as they
// do through net/http, with the fields that tell the client what to do and
// a body that says what was wrong; an upgrade request with a body is
// refused, since what follows it would be taken for frames.
func TestServeAcceptRefusals(t *testing.T) {
	cases := []struct {
		name    string
		request string
		status  int
		fields  map[string]string
		reason  string // in the body
	}{
		{"plain GET", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", 426,
			map[string]string{"Upgrade": "websocket", "Sec-WebSocket-Version": "13"}, `the Upgrade header must contain "websocket"`},
		{"POST", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n" + upgradeFields + "\r\n", 405,
			map[string]string{"Allow": "GET"}, "must be a GET request"},
		{"cross-origin", "GET / HTTP/1.1\r\nHost: a.test\r\nOrigin: https://evil.test\r\n" + upgradeFields + "\r\n", 403,
			nil, "cross-origin"},
		{"version 8", "GET / HTTP/1.1\r\nHost: a.test\r\n" + strings.Replace(upgradeFields, "Version: 13", "Version: 8", 1) + "\r\n", 426,
			map[string]string{"Sec-WebSocket-Version": "13"}, "unsupported Sec-WebSocket-Version"},
		{"no key", "GET / HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400,
			nil, "Sec-WebSocket-Key"},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a.test\r\n" + upgradeFields + "\r\n", 400,
			nil, "needs HTTP/1.1"},
		{"Content-Length: 5", "GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n" + upgradeFields + "\r\nhello", 400,
			nil, "must not have a body"},
		{"chunked", "GET / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n" + upgradeFields + "\r\n5\r\nhello\r\n0\r\n\r\n", 400,
			nil, "must not have a body"},
		{"Content-Length: 0", "GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n" + upgradeFields + "\r\n", 101,
			nil, ""},
	}
	frontDoors := []struct {
		name  string
		start func(*testing.T, http.Handler) string
	}{
		{"Serve", startServe},
		{"net/http", func(t *testing.T, h http.Handler) string {
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			return strings.TrimPrefix(srv.URL, "http://")
		}},
	}
	for _, door := range frontDoors {
		for _, tc := range cases {
			t.Run(door.name+"/"+tc.name, func(t *testing.T) {
				accepted := make(chan error, 1)
				addr := door.start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					c, err := Accept(w, r, nil)
					if err == nil {
						c.CloseNow()
					}
					accepted <- err
				}))
				s := exchange(t, addr, tc.request, door.name == "Serve" && tc.status != 101)
				err := receive(t, accepted, "Accept's result")
				if s.resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d (body %q)", s.resp.StatusCode, tc.status, s.body)
				}
				if tc.status == 101 {
					if err != nil {
						t.Fatalf("Accept: %v", err)
					}
					return
				}
				var herr *HandshakeError
				if !errors.As(err, &herr) || herr.Status != tc.status {
					t.Errorf("Accept returned %v, want a *HandshakeError with status %d", err, tc.status)
				}
				if !strings.Contains(s.body, tc.reason) {
					t.Errorf("body %q does not say %q", s.body, tc.reason)
				}
				for name, want := range tc.fields {
					if got := s.resp.Header.Get(name); got != want {
						t.Errorf("%s: %q, want %q", name, got, want)
					}
				}
				if door.name == "Serve" {
					checkClosingResponse(t, s)
				}
			})
		}
	}
}

// Requests Serve cannot serve are answered with an error status, its
// reason and "Connection: close", without calling the handler.
func TestServeMalformedRequests(t *testing.T) {
	cases := []struct {
		name    string
		request string
		status  int // 200: served, the handler called
	}{
		{"garbage request line", "HELLO\r\n\r\n", 400},
		{"empty request line", "\r\n\r\n", 400},
		{"bad method", "G\x01T / HTTP/1.1\r\nHost: a.test\r\n\r\n", 400},
		{"bad version", "GET / HTTP/one\r\nHost: a.test\r\n\r\n", 400},
		{"TLS to a plain port", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400},
		{"Host with a space", "GET / HTTP/1.1\r\nHost: a test\r\n\r\n", 400},
		{"Host with a slash", "GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n", 400},
		{"Host with a quote", "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", 400},
		{"Host with UTF-8", "GET / HTTP/1.1\r\nHost: ä.test\r\n\r\n", 400},
		{"field without colon", "GET / HTTP/1.1\r\nHost: a.test\r\nNoColon\r\n\r\n", 400},
		{"NUL in a field value", "GET / HTTP/1.1\r\nHost: a.test\r\nX: a\x00b\r\n\r\n", 400},
		{"two Content-Lengths", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"negative Content-Length", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: -1\r\n\r\n", 400},
		{"unknown Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a.test\r\n\r\n", 505},
		{"HTTP/3.0", "GET / HTTP/3.0\r\nHost: a.test\r\n\r\n", 505},

		{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 200},
		{"IPv6 Host with port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200},
		{"absolute form", "GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var called atomic.Bool
			addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called.Store(true)
				io.WriteString(w, "served\n")
			}))
			s := exchange(t, addr, tc.request, true)
			checkClosingResponse(t, s)
			if s.resp.StatusCode != tc.status {
				t.Fatalf("status %d %q, want %d", s.resp.StatusCode, s.body, tc.status)
			}
			if called.Load() != (tc.status == 200) {
				t.Errorf("handler called: %v, want %v", called.Load(), tc.status == 200)
			}
			if tc.status == 200 {
				return
			}
			if got := s.resp.Header.Get("Content-Type"); got != "text/plain; charset=utf-8" || len(s.body) < 10 {
				t.Errorf("%s %q, want a text saying what was wrong", got, s.body)
			}
			if n, err := strconv.Atoi(s.resp.Header.Get("Content-Length")); err != nil || n != len(s.body) {
				t.Errorf("Content-Length %q for a body of %d bytes", s.resp.Header.Get("Content-Length"), len(s.body))
			}
		})
	}
}

// The request line and header fields must fit in 64 KiB: past that Serve
// answers 431 Request Header Fields Too Large.
func TestServeHeaderLimit(t *testing.T) {
	var seen atomic.Int64
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(int64(len(r.Header.Get("X-Big"))))
	}))
	request := func(n int) string {
		return "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: " + strings.Repeat("b", n) + "\r\n\r\n"
	}
	fixed := len(request(0))
	for _, tc := range []struct {
		name   string
		value  int
		status int
	}{
		{"60 KiB", 60 << 10, 200},
		{"exactly 64 KiB", serveMaxHeaderBytes - fixed, 200},
		{"a byte more", serveMaxHeaderBytes - fixed + 1, 431},
		{"100 KiB", 100 << 10, 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen.Store(-1)
			s := exchange(t, addr, request(tc.value), true)
			if s.resp.StatusCode != tc.status {
				t.Fatalf("status %d %q, want %d", s.resp.StatusCode, s.body, tc.status)
			}
			checkClosingResponse(t, s)
			if tc.status == 200 && seen.Load() != int64(tc.value) {
				t.Errorf("the handler saw X-Big of %d bytes, want %d", seen.Load(), tc.value)
			}
			if tc.status == 431 && (seen.Load() != -1 || !strings.Contains(s.body, "larger than 65536 bytes")) {
				t.Errorf("handler saw %d bytes; body %q", seen.Load(), s.body)
			}
		})
	}
	t.Run("many fields", func(t *testing.T) {
		s := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a.test\r\n"+strings.Repeat("X-F: 1\r\n", 10000)+"\r\n", true)
		if s.resp.StatusCode != 431 {
			t.Fatalf("status %d, want 431", s.resp.StatusCode)
		}
	})
}

// endlessConn is a client that sends the start of a request and then a
// header field that never ends, and counts what is read of it.
type endlessConn struct {
	read  atomic.Int64
	mu    sync.Mutex
	wrote bytes.Buffer
}

func (c *endlessConn) Read(p []byte) (int, error) {
	const start = "GET / HTTP/1.1\r\nHost: a.test\r\nX-Endless: "
	off := c.read.Load()
	n := 0
	for ; n < len(p); n++ {
		if i := off + int64(n); i < int64(len(start)) {
			p[n] = start[i]
		} else {
			p[n] = 'e'
		}
	}
	c.read.Add(int64(n))
	return n, nil
}

func (c *endlessConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wrote.Write(p)
}

func (c *endlessConn) Close() error                     { return nil }
func (c *endlessConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *endlessConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *endlessConn) SetDeadline(time.Time) error      { return nil }
func (c *endlessConn) SetReadDeadline(time.Time) error  { return nil }
func (c *endlessConn) SetWriteDeadline(time.Time) error { return nil }

// A header that never ends costs 64 KiB of reading, and memory to match,
// before it is refused.
func TestServeHeaderLimitBoundsMemory(t *testing.T) {
	nc := &endlessConn{}
	done := make(chan struct{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	go func() {
		defer close(done)
		serveConn(nc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Error("the handler was called")
		}))
	}()
	receive(t, done, "end of serveConn")
	runtime.ReadMemStats(&after)
	if n := nc.read.Load(); n > serveMaxHeaderBytes+4<<10 {
		t.Errorf("read %d bytes of header, want at most the limit, %d, and a buffer", n, serveMaxHeaderBytes)
	}
	if !strings.HasPrefix(nc.wrote.String(), "HTTP/1.1 431 ") {
		t.Errorf("answered %q, want 431", nc.wrote.String())
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("allocated %d bytes for a 64 KiB header", alloc)
	}
}

// A client has serveTimeout from its arrival to send its request, and the
// handler to write a response other than an upgrade; a client that says
// nothing, or closes, gets nothing written (one that stops in the middle
// of a line gets a 400). Accept lifts the deadline.
func TestServeSlowClients(t *testing.T) {
	const timeout = 200 * time.Millisecond
	notCalled := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the handler was called for %s %s", r.Method, r.URL)
	})
	// closedWithin checks that the server closes nc between min and max
	// from start, having sent nothing: a request cut short, even in the
	// middle of a line, is not answered (net/http would answer 400, since
	// bufio.Reader.ReadLine hands ReadRequest the partial line without the
	// read's error).
	closedWithin := func(t *testing.T, nc net.Conn, start time.Time, min, max time.Duration) {
		t.Helper()
		b, err := io.ReadAll(nc)
		elapsed := time.Since(start)
		if err != nil {
			t.Fatalf("read %q, %v; want the connection closed", b, err)
		}
		if len(b) != 0 {
			t.Fatalf("read %q; want the connection closed without a word", b)
		}
		if elapsed < min || elapsed > max {
			t.Errorf("closed after %v, want between %v and %v", elapsed, min, max)
		}
	}

	// A client that stalls is closed once serveTimeout is up; one that
	// leaves (closes its sending side) at once.
	for _, tc := range []struct {
		name, sent string
		leaves     bool
	}{
		{"silent", "", false},
		{"stalls at the end of a line", "GET / HTTP/1.1\r\nHost: a.test\r\n", false},
		{"stalls in a line", "GET / HTTP/1.1\r\nHost: a.test\r\nUpgr", false},
		{"closes without a word", "", true},
		{"closes mid-request", "GET / HTTP/1.1\r\nHo", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit, min, max := timeout, timeout-20*time.Millisecond, timeout+time.Second
			if tc.leaves {
				limit, min, max = serveWait, 0, time.Second
			}
			setServeTimeout(t, limit)
			start := time.Now()
			nc, done := serveOne(t, notCalled, nil)
			io.WriteString(nc, tc.sent)
			if tc.leaves {
				nc.CloseWrite()
			}
			closedWithin(t, nc, start, min, max)
			if tc.leaves {
				receive(t, done, "end of serveConn")
			}
		})
	}
	t.Run("a byte at a time", func(t *testing.T) {
		setServeTimeout(t, timeout)
		start := time.Now()
		nc, _ := serveOne(t, notCalled, nil)
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			req := []byte(upgradeRequest)
			for i := 0; i < len(req); i++ {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				if _, err := nc.Write(req[i : i+1]); err != nil {
					return
				}
			}
		}()
		closedWithin(t, nc, start, timeout-20*time.Millisecond, timeout+time.Second)
		close(stop)
		<-stopped
	})
	t.Run("resets", func(t *testing.T) {
		setServeTimeout(t, serveWait)
		start := time.Now()
		nc, done := serveOne(t, notCalled, nil)
		nc.SetLinger(0)
		nc.Close()
		receive(t, done, "end of serveConn")
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("serveConn took %v to notice", elapsed)
		}
	})
	t.Run("slow body", func(t *testing.T) {
		setServeTimeout(t, timeout)
		read := make(chan error, 1)
		nc, _ := serveOne(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err := io.ReadAll(r.Body)
			read <- err
		}), nil)
		io.WriteString(nc, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nhalf!")
		var ne net.Error
		if err := receive(t, read, "the handler's read"); !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("reading a body that stalls: %v, want a timeout", err)
		}
	})
	t.Run("response not read", func(t *testing.T) {
		setServeTimeout(t, timeout)
		wrote := make(chan error, 1)
		start := time.Now()
		nc, _ := serveOne(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			chunk := make([]byte, 1<<20)
			for i := 0; i < 1<<10; i++ { // 1 GiB: more than any socket buffers
				if _, err := w.Write(chunk); err != nil {
					wrote <- err
					return
				}
			}
			wrote <- nil
		}), nil)
		io.WriteString(nc, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
		var ne net.Error
		if err := receive(t, wrote, "the handler's writes to end"); !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("writing to a client that does not read: %v, want a timeout", err)
		}
		if elapsed := time.Since(start); elapsed > timeout+time.Second {
			t.Errorf("the write failed after %v, want about %v", elapsed, timeout)
		}
	})
	t.Run("upgraded", func(t *testing.T) {
		setServeTimeout(t, timeout)
		ended := make(chan error, 1)
		nc, _ := serveOne(t, accepting(ended, serveEcho), nil)
		ctx, cancel := context.WithTimeout(context.Background(), serveWait)
		defer cancel()
		c, _, err := Dial(ctx, "ws://a.test/", &DialOptions{
			NetDialContext: func(context.Context, string, string) (net.Conn, error) { return nc, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		time.Sleep(2 * timeout)
		if err := c.Write(ctx, MessageText, []byte("after the deadline")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "after the deadline" {
			t.Fatalf("echo past serveTimeout: %q, %v", msg, err)
		}
		c.Close(StatusNormalClosure, "")
		if err := receive(t, ended, "end of the server's connection"); CloseStatus(err) != StatusNormalClosure {
			t.Errorf("the server's connection ended with %v", err)
		}
	})
}

// A handler may take the connection itself with Hijack, as gorilla's
// Upgrade does: it gets the bytes the client sent behind the request, and
// Serve leaves the connection to it.
func TestServeHijack(t *testing.T) {
	t.Run("gorilla-style", func(t *testing.T) {
		released := make(chan struct{})
		var releaseOnce sync.Once
		release := func() { releaseOnce.Do(func() { close(released) }) }
		defer release()
		returned := make(chan struct{}, 1)
		finished := make(chan struct{})
		addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/other" {
				io.WriteString(w, "other")
				return
			}
			defer func() { returned <- struct{}{} }()
			nc, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("Hijack: %v", err)
				return
			}
			if n := brw.Reader.Buffered(); n != len("early bytes") {
				t.Errorf("the reader holds %d bytes, want the %d sent behind the request", n, len("early bytes"))
			}
			early := make([]byte, len("early bytes"))
			io.ReadFull(brw.Reader, early)
			fmt.Fprintf(brw, "hijacked: %s\n", early)
			if err := brw.Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
			if n, err := w.Write([]byte("x")); n != 0 || err != http.ErrHijacked {
				t.Errorf("Write after Hijack: %d, %v; want http.ErrHijacked", n, err)
			}
			if _, _, err := http.NewResponseController(w).Hijack(); err != http.ErrHijacked {
				t.Errorf("second Hijack: %v, want http.ErrHijacked", err)
			}
			w.WriteHeader(http.StatusInternalServerError)
			go func() {
				defer close(finished)
				defer nc.Close()
				<-released // after the handler has returned
				line, _ := brw.Reader.ReadString('\n')
				fmt.Fprintf(nc, "still mine: %s", line)
			}()
		}))
		nc := dialRaw(t, addr)
		io.WriteString(nc, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\nearly bytes")
		br := bufio.NewReader(nc)
		if line, err := br.ReadString('\n'); err != nil || line != "hijacked: early bytes\n" {
			t.Fatalf("read %q, %v", line, err)
		}
		// Serve keeps neither the connection nor the reader it gave away:
		// another connection served meanwhile reads through neither.
		receive(t, returned, "the handler's return")
		time.Sleep(10 * time.Millisecond) // for serveConn to be done with it
		if s := exchange(t, addr, "GET /other HTTP/1.1\r\nHost: a.test\r\n\r\n", true); s.body != "other" {
			t.Fatalf("another connection meanwhile: %d %q", s.resp.StatusCode, s.body)
		}
		io.WriteString(nc, "late line\n")
		release()
		if rest, err := io.ReadAll(br); err != nil || string(rest) != "still mine: late line\n" {
			t.Fatalf("after the handler returned: %q, %v", rest, err)
		}
		receive(t, finished, "end of the hijacker")
	})
	t.Run("after Write", func(t *testing.T) {
		addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "begun")
			if nc, brw, err := http.NewResponseController(w).Hijack(); err == nil || nc != nil || brw != nil {
				t.Errorf("Hijack after Write: %v, %v, %v; want an error", nc, brw, err)
			}
			io.WriteString(w, ", and ended")
		}))
		s := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", true)
		checkClosingResponse(t, s)
		if s.resp.StatusCode != 200 || s.body != "begun, and ended" {
			t.Fatalf("response %d %q", s.resp.StatusCode, s.body)
		}
	})
	t.Run("after Accept", func(t *testing.T) {
		ended := make(chan error, 1)
		addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := Accept(w, r, nil)
			if err != nil {
				ended <- err
				return
			}
			if _, err := w.Write([]byte("x")); err != http.ErrHijacked {
				t.Errorf("Write after Accept: %v, want http.ErrHijacked", err)
			}
			if _, _, err := http.NewResponseController(w).Hijack(); err != http.ErrHijacked {
				t.Errorf("Hijack after Accept: %v, want http.ErrHijacked", err)
			}
			if _, err := Accept(w, r, nil); err == nil {
				t.Error("a second Accept succeeded")
			}
			serveEcho(c, ended)
		}))
		dialEcho(t, "ws://"+addr+"/", nil)
		if err := receive(t, ended, "end of the server's connection"); CloseStatus(err) != StatusNormalClosure {
			t.Errorf("the server's connection ended with %v", err)
		}
	})
}

// dialEcho dials url, checks that a message comes back, and closes.
func dialEcho(t *testing.T, url string, opts *DialOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), serveWait)
	defer cancel()
	c, _, err := Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, MessageText, []byte("ping?")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "ping?" {
		t.Fatalf("echo: %q, %v", msg, err)
	}
	if err := c.Close(StatusNormalClosure, ""); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// unwrapper is middleware's ResponseWriter that lets ResponseController
// reach the one beneath; opaque is one that hides it.
type (
	unwrapper struct{ http.ResponseWriter }
	opaque    struct{ http.ResponseWriter }
)

func (w unwrapper) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Middleware that wraps the ResponseWriter works unchanged: Accept takes the
// connection through Hijack when it cannot see Serve's writer, and refuses
// with 500 when it cannot reach it at all.
func TestServeWrappedWriter(t *testing.T) {
	t.Run("Unwrap", func(t *testing.T) {
		ended := make(chan error, 1)
		addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := Accept(unwrapper{w}, r, nil)
			if err != nil {
				ended <- err
				return
			}
			serveEcho(c, ended)
		}))
		// A first frame behind the request reaches the Conn through the
		// hijacked reader too.
		nc := dialRaw(t, addr)
		br := rawUpgrade(t, nc, upgradeRequest, serveFrame(OpText, []byte("pipelined")))
		if _, p := readServerFrame(t, br); string(p) != "pipelined" {
			t.Fatalf("echo %q", p)
		}
		nc.Close()
		receive(t, ended, "end of the server's connection")
		dialEcho(t, "ws://"+addr+"/", nil)
		receive(t, ended, "end of the server's connection")
	})
	t.Run("opaque", func(t *testing.T) {
		accepted := make(chan error, 1)
		addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err := Accept(opaque{w}, r, nil)
			accepted <- err
		}))
		s := exchange(t, addr, upgradeRequest, true)
		if s.resp.StatusCode != 500 || !strings.Contains(s.body, "cannot take over the connection") {
			t.Errorf("response %d %q, want 500 saying why", s.resp.StatusCode, s.body)
		}
		if err := receive(t, accepted, "Accept's result"); err == nil {
			t.Error("Accept succeeded")
		}
	})
}

// syncBuffer is a log's output that tests read while servers write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.b.String()
	b.b.Reset()
	return s
}

// captureLog sends the standard logger's output to a buffer for the rest
// of the test.
func captureLog(t *testing.T) *syncBuffer {
	buf := new(syncBuffer)
	old, flags := log.Writer(), log.Flags()
	log.SetOutput(buf)
	t.Cleanup(func() { log.SetOutput(old); log.SetFlags(flags) })
	return buf
}

// awaitLogged waits until the log has said want; the log is what
// captureLog returned.
func awaitLogged(t *testing.T, logged *syncBuffer, want string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(serveWait); ; time.Sleep(time.Millisecond) {
		if got += logged.take(); strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logged %q, want %q within %v", got, want, serveWait)
		}
	}
}

// A handler's panic is logged, as net/http logs it (but for
// http.ErrAbortHandler), and closes the connection; Serve serves the next
// one. A connection the handler took before panicking stays its own.
func TestServePanics(t *testing.T) {
	logged := captureLog(t)
	called := make(chan string, 10) // a failed case leaves no handler blocked
	echoed := make(chan error, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseHijacker := func() { releaseOnce.Do(func() { close(release) }) }
	var hijacker sync.WaitGroup
	defer hijacker.Wait()
	defer releaseHijacker()
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called <- r.URL.Path
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/code-99":
			w.WriteHeader(99)
		case "/code-1000":
			w.WriteHeader(1000)
		case "/after-hijack":
			nc, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("Hijack: %v", err)
				return
			}
			hijacker.Add(1)
			go func() {
				defer hijacker.Done()
				defer nc.Close()
				<-release
				io.WriteString(nc, "still open\n")
			}()
			panic("after hijack")
		case "/after-accept":
			c, err := Accept(w, r, nil)
			if err != nil {
				t.Errorf("Accept: %v", err)
				return
			}
			go serveEcho(c, echoed)
			panic("after accept")
		default:
			io.WriteString(w, "fine\n")
		}
	}))
	ok := func(t *testing.T) {
		t.Helper()
		if s := exchange(t, addr, "GET /ok HTTP/1.1\r\nHost: a.test\r\n\r\n", true); s.body != "fine\n" {
			t.Fatalf("the next connection got %d %q", s.resp.StatusCode, s.body)
		}
		receive(t, called, "the handler")
	}
	for _, tc := range []struct {
		path string
		log  string // "" for none
	}{
		{"/panic", "boom"},
		{"/abort", ""},
		{"/code-99", "invalid WriteHeader code 99"},
		{"/code-1000", "invalid WriteHeader code 1000"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := readAll(t, addr, "GET "+tc.path+" HTTP/1.1\r\nHost: a.test\r\n\r\n"); got != "" {
				t.Errorf("the client got %q, want the connection closed", got)
			}
			receive(t, called, "the handler")
			got := logged.take()
			if tc.log == "" {
				if got != "" {
					t.Errorf("logged %q, want nothing", got)
				}
			} else if !strings.Contains(got, "websocket: panic serving 127.0.0.1:") ||
				!strings.Contains(got, tc.log) || !strings.Contains(got, "goroutine ") {
				t.Errorf("logged %q, want the panic %q with the address and a stack", got, tc.log)
			}
			ok(t)
		})
	}
	t.Run("/after-hijack", func(t *testing.T) {
		nc := dialRaw(t, addr)
		io.WriteString(nc, "GET /after-hijack HTTP/1.1\r\nHost: a.test\r\n\r\n")
		receive(t, called, "the handler")
		// Once the panic is logged, Serve is done with the connection.
		awaitLogged(t, logged, "after hijack")
		releaseHijacker()
		if b, err := io.ReadAll(nc); err != nil || string(b) != "still open\n" {
			t.Fatalf("the hijacked connection: %q, %v", b, err)
		}
		ok(t)
	})
	t.Run("/after-accept", func(t *testing.T) {
		dialEcho(t, "ws://"+addr+"/after-accept", nil)
		receive(t, called, "the handler")
		if err := receive(t, echoed, "end of the server's connection"); CloseStatus(err) != StatusNormalClosure {
			t.Errorf("the server's connection ended with %v", err)
		}
		// The echo can end before the panic is logged.
		awaitLogged(t, logged, "after accept")
		ok(t)
	})
}

// A handler that panics after its response has begun leaves the client a
// response it can tell from a whole one, as net/http does with chunked
// encoding: here the body has no length, so only the way the connection
// ends can tell.
func TestServePanicMidBody(t *testing.T) {
	captureLog(t)
	cert, pool := SelfSignedCert(t, "duplex Serve test")
	for _, tc := range []struct {
		name   string
		scheme string
		wrap   func(net.Listener) net.Listener
	}{
		{"TCP", "http", func(ln net.Listener) net.Listener { return ln }},
		{"TLS", "https", func(ln net.Listener) net.Listener {
			return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			called := make(chan struct{}, 1)
			startServeOn(t, tc.wrap(ln), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called <- struct{}{}
				io.WriteString(w, "the first half")
				panic("mid-body")
			}))
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: serveWait}).Get(tc.scheme + "://" + ln.Addr().String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			receive(t, called, "the handler")
			if body, err := io.ReadAll(resp.Body); err == nil {
				t.Errorf("read %q and no error: the client cannot tell the body was cut short", body)
			}
		})
	}
}

// tempError is an Accept error that says it is temporary, as EMFILE does.
type tempError struct{}

func (tempError) Error() string   { return "accept: too many open files" }
func (tempError) Timeout() bool   { return false }
func (tempError) Temporary() bool { return true }

// flakyListener fails its first Accepts with errs, then accepts.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	errs  []error
	calls int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls++
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// Serve retries Accept errors that say they are temporary, after a pause,
// and returns any other; connections accepted before carry on.
func TestServeListenerErrors(t *testing.T) {
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	t.Run("temporary", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fl := &flakyListener{Listener: ln, errs: []error{
			tempError{}, &net.OpError{Op: "accept", Net: "tcp", Err: tempError{}}, fmt.Errorf("wrapped: %w", tempError{}),
		}}
		start := time.Now()
		startServeOn(t, fl, hello)
		if s := exchange(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", true); s.body != "hello" {
			t.Fatalf("after temporary errors: %d %q", s.resp.StatusCode, s.body)
		}
		fl.mu.Lock()
		calls := fl.calls
		fl.mu.Unlock()
		if calls < 4 {
			t.Errorf("Accept called %d times, want the 3 failures retried", calls)
		}
		if elapsed := time.Since(start); elapsed < 30*time.Millisecond {
			t.Errorf("served after %v: Serve did not pause between retries (5, 10, 20 ms)", elapsed)
		}
	})
	t.Run("permanent", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fatal := errors.New("accept: the listener is broken")
		served := make(chan error, 1)
		go func() { served <- Serve(&flakyListener{Listener: ln, errs: []error{tempError{}, fatal}}, hello) }()
		if err := receive(t, served, "Serve's return"); err != fatal {
			t.Errorf("Serve returned %v, want %v", err, fatal)
		}
	})
	t.Run("closed", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ended := make(chan error, 1)
		served := make(chan error, 1)
		go func() {
			served <- Serve(ln, accepting(ended, serveEcho))
		}()
		ctx, cancel := context.WithTimeout(context.Background(), serveWait)
		defer cancel()
		c, _, err := Dial(ctx, "ws://"+ln.Addr().String()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		ln.Close()
		if err := receive(t, served, "Serve's return"); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v after ln.Close, want net.ErrClosed", err)
		}
		if err := c.Write(ctx, MessageText, []byte("still here")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "still here" {
			t.Fatalf("after Serve returned: %q, %v", msg, err)
		}
		c.Close(StatusNormalClosure, "")
		receive(t, ended, "end of the server's connection")
	})
}

// Behind tls.NewListener, Serve serves wss:// and sets the request's TLS
// field; a client that does not speak TLS is closed at once.
func TestServeTLS(t *testing.T) {
	cert, pool := SelfSignedCert(t, "duplex Serve test")
	config := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	states := make(chan *tls.ConnectionState, 1)
	startServeOn(t, tls.NewListener(ln, config), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		states <- r.TLS
		c, err := Accept(w, r, nil)
		if err != nil {
			ended <- err
			return
		}
		serveEcho(c, ended)
	}))
	dialEcho(t, "wss://"+ln.Addr().String()+"/", &DialOptions{TLSConfig: &tls.Config{RootCAs: pool}})
	if err := receive(t, ended, "end of the server's connection"); CloseStatus(err) != StatusNormalClosure {
		t.Errorf("the server's connection ended with %v", err)
	}
	st := receive(t, states, "the handler")
	if st == nil || !st.HandshakeComplete || len(st.PeerCertificates) != 0 || st.NegotiatedProtocol != "http/1.1" {
		t.Errorf("r.TLS = %+v, want a complete handshake that agreed on http/1.1", st)
	}

	t.Run("plain HTTP to the TLS port", func(t *testing.T) {
		nc, done := serveOne(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Error("the handler was called")
		}), func(nc net.Conn) net.Conn { return tls.Server(nc, config) })
		io.WriteString(nc, upgradeRequest)
		if _, err := io.ReadAll(nc); err != nil {
			t.Errorf("the server did not close the connection: %v", err)
		}
		receive(t, done, "end of serveConn")
	})
}

// The request a handler gets: RemoteAddr the client's address, Host the
// Host field, a context cancelled when the handler returns, no TLS, and a
// body of any size.
func TestServeRequestFields(t *testing.T) {
	type seen struct {
		remote, host, uri, proto string
		ctx                      context.Context
		ctxErr                   error // while the handler runs
		tls                      bool
		body                     int
		err                      error
	}
	seenc := make(chan seen, 1)
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		seenc <- seen{r.RemoteAddr, r.Host, r.RequestURI, r.Proto, r.Context(), r.Context().Err(), r.TLS != nil, int(n), err}
		io.WriteString(w, "seen")
	}))
	big := strings.Repeat("0123456789abcdef", 200<<10/16)
	for _, tc := range []struct {
		name, request string
		host, uri     string
		body          int
	}{
		{"origin form", "GET /path?q=1 HTTP/1.1\r\nHost: example.test:8080\r\n\r\n", "example.test:8080", "/path?q=1", 0},
		{"absolute form", "GET http://other.test/x HTTP/1.1\r\nHost: example.test\r\n\r\n", "other.test", "http://other.test/x", 0},
		{"HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", "", "/", 0},
		{"200 KiB body", "POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n" + big, "a.test", "/up", len(big)},
		{"chunked body", "POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", "a.test", "/up", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := exchange(t, addr, tc.request, true)
			got := receive(t, seenc, "the handler")
			if s.body != "seen" {
				t.Fatalf("response %d %q", s.resp.StatusCode, s.body)
			}
			if got.remote != s.local {
				t.Errorf("RemoteAddr %q, want the client's %q", got.remote, s.local)
			}
			if got.host != tc.host || got.uri != tc.uri || got.tls {
				t.Errorf("Host %q, RequestURI %q, TLS %v; want %q, %q, false", got.host, got.uri, got.tls, tc.host, tc.uri)
			}
			if got.body != tc.body || got.err != nil {
				t.Errorf("body of %d bytes, %v; want %d", got.body, got.err, tc.body)
			}
			// The response is complete, so the handler has returned.
			if got.ctxErr != nil {
				t.Errorf("the request's context was done while the handler ran: %v", got.ctxErr)
			}
			select {
			case <-got.ctx.Done():
				if err := got.ctx.Err(); err != context.Canceled {
					t.Errorf("the request's context ended with %v, want %v", err, context.Canceled)
				}
			case <-time.After(serveWait):
				t.Errorf("the request's context is not done %v after the handler returned", serveWait)
			}
		})
	}
}

// A handler that upgrades and returns ends its request's context, as
// net/http's does, but not the connection: work it started with the
// context stops, and the Conn carries on.
func TestServeContextEndsWithHandler(t *testing.T) {
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		go func(ctx context.Context) {
			defer c.CloseNow()
			select {
			case <-ctx.Done():
			case <-time.After(serveWait):
			}
			msg := fmt.Sprintf("context: %v", ctx.Err())
			_ = c.Write(context.Background(), MessageText, []byte(msg))
			_, _, _ = c.Read(context.Background()) // until the client closes
		}(r.Context())
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*serveWait)
	defer cancel()
	c, _, err := Dial(ctx, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, msg, err := c.Read(ctx)
	if want := "context: " + context.Canceled.Error(); err != nil || string(msg) != want {
		t.Fatalf("the server said %q, %v; want %q", msg, err, want)
	}
	if err := c.Close(StatusNormalClosure, ""); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// Serve's per-request state is pooled: many handshakes in a row, each
// differing from the last in its fields and in what follows the request,
// each see their own, while the connections upgraded before go on working.
func TestServeStateReuse(t *testing.T) {
	const n = 200
	ended := make(chan error, n)
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(r.Header.Get("X-Seq"))
		if err != nil {
			t.Errorf("X-Seq %q", r.Header.Get("X-Seq"))
		}
		if even := r.Header.Get("X-Even") != ""; even != (i%2 == 0) {
			t.Errorf("request %d: X-Even %q: a field of another request", i, r.Header.Get("X-Even"))
		}
		if r.URL.Path != "/"+strconv.Itoa(i) || len(r.Header) != 5+(1-i%2) {
			t.Errorf("request %d: path %q, %d fields %v", i, r.URL.Path, len(r.Header), r.Header)
		}
		c, err := Accept(w, r, nil)
		if err != nil {
			ended <- err
			return
		}
		go serveEcho(c, ended)
	}))

	type client struct {
		nc net.Conn
		br *bufio.Reader
	}
	expect := func(c client, i int, want string) {
		t.Helper()
		if _, p := readServerFrame(t, c.br); string(p) != want {
			t.Fatalf("connection %d: echo %q, want %q", i, p, want)
		}
	}
	var prev client
	for i := 0; i < n; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(serveWait))
		request := "GET /" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: a.test\r\nX-Seq: " + strconv.Itoa(i) + "\r\n"
		if i%2 == 0 {
			request += "X-Even: yes\r\n"
		}
		request += upgradeFields + "\r\n"
		var first []byte
		msg := fmt.Sprintf("first message of %d", i)
		if i%2 == 1 { // pipelined; on even requests nothing follows
			first = serveFrame(OpText, []byte(msg))
		}
		c := client{nc, rawUpgrade(t, nc, request, first)}
		if i%2 == 0 {
			nc.Write(serveFrame(OpText, []byte(msg)))
		}
		expect(c, i, msg)
		if prev.nc != nil {
			prev.nc.Write(serveFrame(OpText, []byte("again")))
			expect(prev, i-1, "again")
			prev.nc.Close()
			receive(t, ended, "end of a server's connection")
		}
		prev = c
	}
	prev.nc.Close()
	receive(t, ended, "end of a server's connection")
}

// FuzzServeRequest sends arbitrary bytes to serveConn, as a client's first
// words, then half-closes. Whatever they are, the server ends within a
// bounded time and sends either nothing or one HTTP/1.1 response: 101 only
// to a valid opening handshake, otherwise an error status with the
// connection closed after it.
func FuzzServeRequest(f *testing.F) {
	for _, seed := range []string{
		upgradeRequest,
		upgradeRequest + string(serveFrame(OpText, []byte("pipelined"))),
		"GET / HTTP/1.1\r\nHost: a.test\r\nOrigin: http://a.test\r\n" + upgradeFields + "\r\n",
		"GET / HTTP/1.1\r\nHost: a.test\r\nOrigin: http://b.test\r\n" + upgradeFields + "\r\n",
		"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n" + upgradeFields + "\r\nhello",
		"GET / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n" + upgradeFields + "\r\n0\r\n\r\n",
		"GET / HTTP/1.0\r\n" + upgradeFields + "\r\n",
		"GET / HTTP/1.1\r\n" + upgradeFields + "\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n" + upgradeFields + "\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.test\r\nUpgr",
		"HELLO\r\n\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	// Every input ends with a half-close, so serveConn waits for nothing;
	// the timeout only bounds a server that would.
	old := serveTimeout
	serveTimeout = time.Second
	f.Cleanup(func() { serveTimeout = old })
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := Accept(w, r, nil); err == nil {
			c.CloseNow()
		}
	})

	f.Fuzz(func(t *testing.T, input []byte) {
		client, _ := serveOne(t, handler, nil)
		_, _ = client.Write(input) // the server may have answered and gone
		_ = client.CloseWrite()
		out, err := io.ReadAll(client)
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server neither answered nor closed within %v; it sent %q", serveWait, out)
		}
		if len(out) == 0 {
			return
		}
		br := bufio.NewReader(bytes.NewReader(out))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("the server sent %q, not an HTTP response: %v", out, err)
		}
		if resp.Proto != "HTTP/1.1" {
			t.Fatalf("the server answered in %s", resp.Proto)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(input)))
			if err != nil {
				t.Fatalf("101 to a request that does not parse: %v", err)
			}
			if herr := checkUpgradeRequest(r); herr != nil {
				t.Fatalf("101 to a request checkUpgradeRequest refuses: %v", herr)
			}
			if herr := checkOrigin(r, nil); herr != nil {
				t.Fatalf("101 to a cross-origin request: %v", herr)
			}
			if r.ProtoMajor != 1 || (r.Host == "" && r.ProtoAtLeast(1, 1)) || !validHost(r.Host) {
				t.Fatalf("101 to %s with Host %q", r.Proto, r.Host)
			}
			if got, want := resp.Header.Get("Sec-WebSocket-Accept"), AcceptKey(r.Header.Get("Sec-WebSocket-Key")); got != want {
				t.Fatalf("Sec-WebSocket-Accept %q, want %q", got, want)
			}
			return
		}
		if resp.StatusCode < 400 {
			t.Fatalf("status %d: neither 101 nor an error", resp.StatusCode)
		}
		if !resp.Close {
			t.Fatalf("error %d without Connection: close", resp.StatusCode)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatalf("the error's body: %v", err)
		}
		if rest, _ := io.ReadAll(br); len(rest) != 0 {
			t.Fatalf("%q after the response", rest)
		}
	})
}

// SelfSignedCert returns a self-signed certificate for 127.0.0.1 and a pool
// that trusts it. It is exported for the tests outside the package; being
// in a _test.go file, it is not part of the API.
func SelfSignedCert(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// A handler that (wrongly) keeps its ResponseWriter past its return can
// neither write to nor take over the connection of a later request: Serve
// pools only what the handler never holds.
func TestServeWriterKeptPastReturn(t *testing.T) {
	kept := make(chan http.ResponseWriter, 1)
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case kept <- w:
		default:
		}
		io.WriteString(w, "first")
	}))
	if s := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", true); s.body != "first" {
		t.Fatalf("first response %q", s.body)
	}
	old := receive(t, kept, "the first handler's writer")
	if _, err := old.Write([]byte("late")); err == nil {
		t.Error("a write after the handler returned succeeded")
	}
	if _, _, err := http.NewResponseController(old).Hijack(); err == nil {
		t.Error("Hijack after the handler returned succeeded")
	}
	r, _ := http.ReadRequest(bufio.NewReader(strings.NewReader(upgradeRequest)))
	if _, err := Accept(old, r, nil); err == nil {
		t.Error("Accept after the handler returned succeeded")
	}
	for i := 0; i < 20; i++ {
		if s := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", true); s.body != "first" {
			t.Fatalf("response %d: %q; a late write reached it", i, s.body)
		}
	}
}

// A handler that returns while another goroutine of its runs Accept gets a
// working connection, the bytes sent behind the request included, or a
// refused Accept; never a connection that shares the reader with the next
// request's.
func TestServeAcceptAfterReturn(t *testing.T) {
	ended := make(chan error, 64)
	var requests atomic.Int32
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() {
			c, err := Accept(w, r, nil)
			if err != nil {
				ended <- err
				return
			}
			serveEcho(c, ended)
		}()
		// Give the goroutine a head start of 0 to 300 µs: it wins the
		// race to the connection some of the time.
		time.Sleep(time.Duration(requests.Add(1)%4) * 100 * time.Microsecond)
	}))
	upgraded := 0
	for i := 0; i < 50; i++ {
		nc := dialRaw(t, addr)
		payload := []byte(fmt.Sprintf("pipelined %d", i))
		if _, err := nc.Write(append([]byte(upgradeRequest), serveFrame(OpText, payload)...)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			upgraded++
			if _, p := readServerFrame(t, br); !bytes.Equal(p, payload) {
				t.Fatalf("connection %d echoed %q, want %q", i, p, payload)
			}
		}
		nc.Close()
		receive(t, ended, "the end of the server's side")
	}
	t.Logf("%d of 50 connections upgraded before their handler returned", upgraded)
}

// The 101 response's own fields are the handshake's, whatever the handler
// set before Accept: §11.3.3 and §11.3.4 allow Sec-WebSocket-Accept and
// Sec-WebSocket-Protocol once, §4.2.2 allows no Sec-WebSocket-Protocol
// when no subprotocol was chosen, and RFC 9110 §8.6 no Content-Length on a
// 1xx response. The handler's other fields go out.
func TestAcceptKeepsTheHandshakeFields(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Sec-WebSocket-Protocol", "chat")
		h.Set("Sec-WebSocket-Accept", "bogus")
		h.Set("Sec-WebSocket-Extensions", "x-unknown")
		h["sec-websocket-version"] = []string{"8"} // not in canonical form
		h.Set("Upgrade", "h2c")
		h.Set("Content-Length", "5")
		h.Set("X-Handler", "kept")
		c, err := Accept(w, r, &AcceptOptions{Subprotocols: []string{"chat"}})
		if err == nil {
			c.CloseNow()
		}
	})
	ts := httptest.NewServer(handler)
	defer ts.Close()
	servers := map[string]string{
		"net/http": strings.TrimPrefix(ts.URL, "http://"),
		"Serve":    startServe(t, handler),
	}
	for name, addr := range servers {
		for _, offer := range []string{"chat", "other"} {
			t.Run(name+"/"+offer, func(t *testing.T) {
				nc := dialRaw(t, addr)
				io.WriteString(nc, "GET / HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
					"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
					"Sec-WebSocket-Protocol: "+offer+"\r\n\r\n")
				wire, _ := io.ReadAll(nc)
				if !strings.HasPrefix(string(wire), "HTTP/1.1 101 ") {
					t.Fatalf("response %q, want 101", wire)
				}
				h := wireHeader(t, string(wire))
				want := map[string][]string{
					"Upgrade":                  {"websocket"},
					"Sec-Websocket-Accept":     {"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
					"Sec-Websocket-Protocol":   {"chat"},
					"Sec-Websocket-Extensions": nil,
					"Sec-Websocket-Version":    nil,
					"Content-Length":           nil,
					"X-Handler":                {"kept"},
				}
				if offer != "chat" {
					want["Sec-Websocket-Protocol"] = nil
				}
				for k, v := range want {
					if got := h.Values(k); !slices.Equal(got, v) {
						t.Errorf("%s fields %q, want %q", k, got, v)
					}
				}
			})
		}
	}
}
