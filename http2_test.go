package websocket

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"
)

// These tests drive Accept's HTTP/2 path (RFC 8441) in-process: an extended
// CONNECT request whose body and response are the two directions of a
// loopback TCP connection, standing in for an HTTP/2 stream. The tests against real HTTP/2
// clients (Node, Chromium) are in interop_test.go.

// streamWriter is the ResponseWriter net/http gives a handler on an HTTP/2
// stream, reduced to what Accept uses: headers, a status, a body that is
// sent when flushed, and a write deadline.
type streamWriter struct {
	header  http.Header
	status  int
	out     *bufio.Writer
	pipe    net.Conn
	flushes int
}

func (w *streamWriter) Header() http.Header { return w.header }
func (w *streamWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *streamWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.out.Write(p)
}
func (w *streamWriter) FlushError() error {
	w.flushes++
	return w.out.Flush()
}
func (w *streamWriter) SetReadDeadline(t time.Time) error  { return nil }
func (w *streamWriter) SetWriteDeadline(t time.Time) error { return w.pipe.SetWriteDeadline(t) }

// connectRequest is an RFC 8441 §5 extended CONNECT request as net/http
// presents it, with body as the stream's incoming bytes.
func connectRequest(ctx context.Context, body io.ReadCloser) *http.Request {
	r, _ := http.NewRequestWithContext(ctx, http.MethodConnect, "https://127.0.0.1/chat", body)
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Host = "127.0.0.1"
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set(":protocol", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	return r
}

// streamPair accepts an extended CONNECT request on a fake stream and
// returns the server Conn, a client Conn at the other end of the stream,
// the response writer and a function that ends the handler (cancels the
// request's context).
func streamPair(t *testing.T, opts *AcceptOptions, edit func(*http.Request)) (server, client *Conn, w *streamWriter, handlerDone func()) {
	t.Helper()
	serverEnd, clientEnd := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := connectRequest(ctx, serverEnd)
	if edit != nil {
		edit(r)
	}
	w = &streamWriter{header: http.Header{}, out: bufio.NewWriter(serverEnd), pipe: serverEnd}
	server, err := Accept(w, r, opts)
	if err != nil {
		cancel()
		t.Fatalf("Accept: %v", err)
	}
	var offer *CompressionOptions
	if opts != nil {
		offer = opts.Compression
	}
	ext, err := acceptedExtensions(w.header, offer)
	if err != nil {
		t.Fatal(err)
	}
	client = newConn(clientEnd, false, nil, w.header.Get("Sec-WebSocket-Protocol"), ext)
	t.Cleanup(func() {
		cancel()
		server.CloseNow()
		client.CloseNow()
	})
	return server, client, w, cancel
}

func TestHTTP2AcceptAnswers200WithoutAcceptKey(t *testing.T) {
	opts := &AcceptOptions{Subprotocols: []string{"chat"}, Compression: &CompressionOptions{}}
	_, _, w, _ := streamPair(t, opts, func(r *http.Request) {
		r.Header.Set("Sec-WebSocket-Protocol", "chat")
		r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate")
	})
	if w.status != http.StatusOK {
		t.Errorf("status %d, want 200 (RFC 8441 §5)", w.status)
	}
	if w.flushes == 0 {
		t.Error("the 200 response was not flushed")
	}
	for k, want := range map[string]string{
		"Sec-WebSocket-Protocol":   "chat",
		"Sec-WebSocket-Extensions": "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
		"Sec-WebSocket-Accept":     "",
		"Upgrade":                  "",
		"Connection":               "",
	} {
		if got := w.header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}

func TestHTTP2AcceptRefusals(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(*http.Request)
		status int
	}{
		{"protocol other than websocket", func(r *http.Request) { r.Header.Set(":protocol", "webtransport") }, http.StatusBadRequest},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, http.StatusUpgradeRequired},
		{"no version", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Version") }, http.StatusUpgradeRequired},
		{"cross-origin page", func(r *http.Request) { r.Header.Set("Origin", "https://evil.test") }, http.StatusForbidden},
		{"plain CONNECT", func(r *http.Request) { r.Header.Del(":protocol") }, http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := connectRequest(context.Background(), http.NoBody)
			c.edit(r)
			w := &streamWriter{header: http.Header{}, out: bufio.NewWriter(io.Discard)}
			_, err := Accept(w, r, nil)
			var herr *HandshakeError
			if !errors.As(err, &herr) || w.status != c.status {
				t.Fatalf("status %d, error %v; want %d and a HandshakeError", w.status, err, c.status)
			}
		})
	}
}

// The Conn over a stream is the same Conn: whole and streamed messages,
// fragmentation, compression, pings, limits and the close handshake.
func TestHTTP2StreamCarriesTheProtocol(t *testing.T) {
	for _, compress := range []bool{false, true} {
		name := "plain"
		var opts AcceptOptions
		if compress {
			name = "deflate"
			opts.Compression = &CompressionOptions{Level: flate.BestSpeed}
		}
		t.Run(name, func(t *testing.T) {
			server, client, _, _ := streamPair(t, &opts, func(r *http.Request) {
				r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate")
			})
			if compress != (server.flate != nil) {
				t.Fatalf("compression negotiated: %v", server.flate != nil)
			}
			ctx := context.Background()
			go func() {
				for {
					typ, r, err := server.Reader(ctx)
					if err != nil {
						return
					}
					w, err := server.Writer(ctx, typ)
					if err != nil {
						return
					}
					io.Copy(w, r)
					w.Close()
				}
			}()
			big := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
			for _, msg := range [][]byte{[]byte("hello"), {}, big} {
				if err := client.Write(ctx, MessageBinary, msg); err != nil {
					t.Fatal(err)
				}
				typ, got, err := client.Read(ctx)
				if err != nil || typ != MessageBinary || !bytes.Equal(got, msg) {
					t.Fatalf("echo of %d bytes: %v, %d bytes, %v", len(msg), typ, len(got), err)
				}
			}
			w, _ := client.Writer(ctx, MessageText)
			for i := 0; i < 3; i++ {
				w.Write(bytes.Repeat([]byte("fragment "), 4000))
			}
			w.Close()
			if _, got, err := client.Read(ctx); err != nil || len(got) != 3*9*4000 {
				t.Fatalf("fragmented echo: %d bytes, %v", len(got), err)
			}
			pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			go client.Read(ctx) // delivers the pong
			if err := client.Ping(pingCtx); err != nil {
				t.Fatalf("ping over the stream: %v", err)
			}
		})
	}
}

// A read that times out between messages must leave a stream readable,
// which HTTP/2's own deadlines would not (they close the request body).
func TestHTTP2ReadTimeoutLeavesStreamUsable(t *testing.T) {
	server, client, _, _ := streamPair(t, nil, nil)
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, _, err := server.Read(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("read %d: %v, want context.DeadlineExceeded", i, err)
		}
	}
	server.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, _, err := server.Read(context.Background()); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past SetReadDeadline: %v", err)
	}
	server.SetReadDeadline(time.Time{})
	ctx := context.Background()
	go client.Write(ctx, MessageText, []byte("still here"))
	if _, msg, err := server.Read(ctx); err != nil || string(msg) != "still here" {
		t.Fatalf("read after timeouts: %q, %v", msg, err)
	}
}

// Closing sends exactly one Close frame each way (Chromium reports 1006
// when it sees a second one) and both ends see a clean closure.
func TestHTTP2CloseHandshake(t *testing.T) {
	server, client, _, _ := streamPair(t, nil, nil)
	ctx := context.Background()
	clientErr := make(chan error, 1)
	go func() {
		_, _, err := client.Read(ctx)
		clientErr <- err
	}()
	if err := server.Close(StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("server Close: %v", err)
	}
	err := <-clientErr
	if CloseStatus(err) != StatusNormalClosure {
		t.Fatalf("client read %v, want a 1000 CloseError", err)
	}
	if _, err := server.NetConn().Write([]byte{0x88, 0}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("stream write after Close: %v, want net.ErrClosed", err)
	}
}

func TestHTTP2CloseSendsOneCloseFrame(t *testing.T) {
	serverEnd, clientEnd := tcpPair(t)
	defer clientEnd.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &streamWriter{header: http.Header{}, out: bufio.NewWriter(serverEnd), pipe: serverEnd}
	server, err := Accept(w, connectRequest(ctx, serverEnd), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer server.CloseNow()
	done := make(chan error, 1)
	go func() { done <- server.Close(StatusGoingAway, "") }()
	var h [2]byte
	if _, err := io.ReadFull(clientEnd, h[:]); err != nil || h != [2]byte{0x88, 2} {
		t.Fatalf("first frame % x, %v; want a Close frame", h, err)
	}
	var code [2]byte
	io.ReadFull(clientEnd, code[:])
	// The client answers the Close: the server must not send another.
	mask := [4]byte{1, 2, 3, 4}
	answer := append([]byte{0x88, 0x82}, mask[:]...)
	echo := code
	Mask(echo[:], mask)
	clientEnd.Write(append(answer, echo[:]...))
	if err := <-done; err != nil {
		t.Fatalf("Close: %v", err)
	}
	clientEnd.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := clientEnd.Read(h[:]); n != 0 || err == nil {
		t.Fatalf("the server sent %d more bytes after its Close frame", n)
	}
}

// net/http ends the stream when the handler returns; a Conn used after
// that reports a closed connection, never touches the finished response.
func TestHTTP2HandlerReturnClosesConn(t *testing.T) {
	server, _, _, handlerDone := streamPair(t, nil, nil)
	handlerDone()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := server.Write(context.Background(), MessageText, []byte("late"))
		if errors.Is(err, net.ErrClosed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write after the handler returned: %v, want net.ErrClosed", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, _, err := server.Read(context.Background()); CloseStatus(err) != StatusAbnormalClosure {
		t.Fatalf("read after the handler returned: %v, want 1006", err)
	}
}

// A handler's own Sec-WebSocket- fields, Upgrade and Content-Length do not
// reach the 200 response either: no Sec-WebSocket-Protocol when none was
// chosen (§4.2.2), no Content-Length in a 2xx answer to CONNECT (RFC 9110
// §9.3.6). The handler's other fields go out.
func TestHTTP2AcceptKeepsTheHandshakeFields(t *testing.T) {
	serverEnd, _ := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &streamWriter{header: http.Header{
		"Sec-Websocket-Protocol": {"chat"},
		"Sec-Websocket-Accept":   {"bogus"},
		"Content-Length":         {"5"},
		"Upgrade":                {"h2c"},
		"X-Handler":              {"kept"},
	}, out: bufio.NewWriter(serverEnd), pipe: serverEnd}
	c, err := Accept(w, connectRequest(ctx, serverEnd), &AcceptOptions{Subprotocols: []string{"chat"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for k, want := range map[string][]string{
		"Sec-Websocket-Protocol": nil, // the client offered none
		"Sec-Websocket-Accept":   nil,
		"Content-Length":         nil,
		"Upgrade":                nil,
		"X-Handler":              {"kept"},
	} {
		if got := w.header.Values(k); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}
