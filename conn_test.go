package websocket_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
	"github.com/duplex-go/websocket/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startServer serves handler on a loopback address and returns its ws:// URL.
func startServer(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// echoHandler echoes every message with its type until the connection ends,
// and reports how it ended on done (if not nil).
func echoHandler(t *testing.T, opts *websocket.AcceptOptions, limit int64, done chan<- error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, opts)
		if err != nil {
			if done != nil {
				done <- err
			}
			return
		}
		defer c.CloseNow()
		if limit != 0 {
			c.SetReadLimit(limit)
		}
		for {
			typ, msg, err := c.Read(context.Background())
			if err != nil {
				if done != nil {
					done <- err
				}
				return
			}
			if err := c.Write(context.Background(), typ, msg); err != nil {
				if done != nil {
					done <- err
				}
				return
			}
		}
	}
}

func pattern(n int, text bool) []byte {
	b := make([]byte, n)
	for i := range b {
		if text {
			b[i] = "abcdefghijklmnopqrstuvwxyz0123456789 "[i%37]
		} else {
			b[i] = byte(i*31 + i>>8)
		}
	}
	return b
}

var boundarySizes = []int{0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20}

func TestEchoWholeAndStreamed(t *testing.T) {
	compressions := map[string]*websocket.CompressionOptions{
		"plain":            nil,
		"deflate":          {},
		"deflate-takeover": {ContextTakeover: true, Threshold: -1},
	}
	for name, comp := range compressions {
		t.Run(name, func(t *testing.T) {
			url := startServer(t, echoHandler(t, &websocket.AcceptOptions{Compression: comp}, 2<<20, nil))
			ctx := testContext(t)
			c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Compression: comp})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			c.SetReadLimit(2 << 20)
			for _, n := range boundarySizes {
				for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
					msg := pattern(n, typ == websocket.MessageText)
					// Whole message.
					if err := c.Write(ctx, typ, msg); err != nil {
						t.Fatal(err)
					}
					gotTyp, got, err := c.Read(ctx)
					if err != nil || gotTyp != typ || !bytes.Equal(got, msg) {
						t.Fatalf("%v %d bytes: got %v %d bytes, %v", typ, n, gotTyp, len(got), err)
					}
					// Streamed in uneven pieces.
					w, err := c.Writer(ctx, typ)
					if err != nil {
						t.Fatal(err)
					}
					for rest := msg; len(rest) > 0; {
						k := min(len(rest), 1+len(rest)/3)
						if _, err := w.Write(rest[:k]); err != nil {
							t.Fatal(err)
						}
						rest = rest[k:]
					}
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
					gotTyp, r, err := c.Reader(ctx)
					if err != nil {
						t.Fatal(err)
					}
					got, err = io.ReadAll(r)
					if err != nil || gotTyp != typ || !bytes.Equal(got, msg) {
						t.Fatalf("streamed %v %d bytes: got %v %d bytes, %v", typ, n, gotTyp, len(got), err)
					}
				}
			}
			if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// rawClient is a client that writes whatever bytes a test gives it: the
// hostile peer that protocol tests need.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dialRaw performs a valid opening handshake by hand, offering extensions
// if ext is not empty, and sends extra right behind the request.
func dialRaw(t *testing.T, url, ext string, extra []byte) *rawClient {
	t.Helper()
	host := strings.TrimPrefix(url, "ws://")
	host, path, _ := strings.Cut(host, "/")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /" + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if ext != "" {
		req += "Sec-WebSocket-Extensions: " + ext + "\r\n"
	}
	if _, err := nc.Write(append([]byte(req+"\r\n"), extra...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: %v %v", resp.Status, resp.Header)
	}
	return &rawClient{t: t, nc: nc, br: br}
}

// frame returns a masked client frame.
func frame(fin bool, op websocket.Opcode, payload []byte) []byte {
	h := websocket.Header{Fin: fin, Opcode: op, Masked: true, MaskKey: [4]byte{1, 2, 3, 4}, Length: int64(len(payload))}
	b := websocket.AppendHeader(nil, h)
	p := bytes.Clone(payload)
	websocket.Mask(p, h.MaskKey)
	return append(b, p...)
}

func (rc *rawClient) send(b ...[]byte) {
	rc.t.Helper()
	if _, err := rc.nc.Write(bytes.Join(b, nil)); err != nil {
		rc.t.Fatal(err)
	}
}

// next reads the next frame the server sends.
func (rc *rawClient) next() (websocket.Header, []byte) {
	rc.t.Helper()
	h, err := websocket.ReadHeader(rc.br)
	if err != nil {
		rc.t.Fatalf("reading a frame: %v", err)
	}
	if h.Masked {
		rc.t.Fatalf("server sent a masked frame")
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(rc.br, p); err != nil {
		rc.t.Fatal(err)
	}
	return h, p
}

// expectClose reads frames until a Close frame, checks its code, and checks
// that the server then closes the TCP connection.
func (rc *rawClient) expectClose(code websocket.StatusCode) {
	rc.t.Helper()
	for {
		h, p := rc.next()
		if h.Opcode != websocket.OpClose {
			continue
		}
		got := websocket.StatusCode(0)
		if len(p) >= 2 {
			got = websocket.StatusCode(binary.BigEndian.Uint16(p))
		}
		if got != code {
			rc.t.Fatalf("close code %v (%q), want %v", got, p[min(2, len(p)):], code)
		}
		if _, err := io.Copy(io.Discard, rc.br); err != nil {
			rc.t.Fatalf("server did not close the TCP connection: %v", err)
		}
		rc.nc.Close()
		return
	}
}

// TestProtocolViolations sends the server each violation RFC 6455 says must
// fail the connection, and checks the status code it closes with.
func TestProtocolViolations(t *testing.T) {
	long := make([]byte, 126)
	cases := []struct {
		name  string
		wire  []byte
		code  websocket.StatusCode
		limit int64
	}{
		{"§5.1 unmasked client frame", []byte{0x81, 0x02, 'h', 'i'}, 1002, 0},
		{"§5.2 RSV1 without extension", func() []byte { b := frame(true, websocket.OpText, []byte("x")); b[0] |= 0x40; return b }(), 1002, 0},
		{"§5.2 RSV2", func() []byte { b := frame(true, websocket.OpText, []byte("x")); b[0] |= 0x20; return b }(), 1002, 0},
		{"§5.2 RSV3", func() []byte { b := frame(true, websocket.OpText, []byte("x")); b[0] |= 0x10; return b }(), 1002, 0},
		{"§5.2 reserved opcode 3", frame(true, 3, nil), 1002, 0},
		{"§5.2 reserved opcode 7", frame(true, 7, nil), 1002, 0},
		{"§5.2 reserved opcode 11", frame(true, 11, nil), 1002, 0},
		{"§5.2 reserved opcode 15", frame(true, 15, nil), 1002, 0},
		{"§5.2 length with top bit set", []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 1002, 0},
		{"§5.5 ping of 126 bytes", frame(true, websocket.OpPing, long), 1002, 0},
		{"§5.5 fragmented ping", frame(false, websocket.OpPing, nil), 1002, 0},
		{"§5.4 continuation with no message", frame(true, websocket.OpContinuation, []byte("x")), 1002, 0},
		{"§5.4 new message inside a fragmented one", append(frame(false, websocket.OpText, []byte("a")), frame(true, websocket.OpText, []byte("b"))...), 1002, 0},
		{"§5.5.1 close payload of one byte", frame(true, websocket.OpClose, []byte{3}), 1002, 0},
		{"§7.4.1 close code 1005", frame(true, websocket.OpClose, []byte{0x03, 0xED}), 1002, 0},
		{"§7.4.1 close code 999", frame(true, websocket.OpClose, []byte{0x03, 0xE7}), 1002, 0},
		{"§7.4.1 close code 5000", frame(true, websocket.OpClose, []byte{0x13, 0x88}), 1002, 0},
		{"§7.4.1 close code 1004, reserved", frame(true, websocket.OpClose, []byte{0x03, 0xEC}), 1002, 0},
		{"§7.4.1 close code 1006, never sent", frame(true, websocket.OpClose, []byte{0x03, 0xEE}), 1002, 0},
		{"§7.4.1 close code 1015, never sent", frame(true, websocket.OpClose, []byte{0x03, 0xF7}), 1002, 0},
		{"§7.4.2 close code 1016, unassigned", frame(true, websocket.OpClose, []byte{0x03, 0xF8}), 1002, 0},
		{"§7.4.2 close code 2999, unassigned", frame(true, websocket.OpClose, []byte{0x0B, 0xB7}), 1002, 0},
		{"§8.1 invalid UTF-8 text", frame(true, websocket.OpText, []byte{'a', 0xff}), 1007, 0},
		{"§8.1 text ending mid-sequence", frame(true, websocket.OpText, []byte{'a', 0xce}), 1007, 0},
		{"§5.5.1 close reason not UTF-8", frame(true, websocket.OpClose, []byte{0x03, 0xE8, 0xff}), 1007, 0},
		{"§10.4 message over the read limit", frame(true, websocket.OpBinary, make([]byte, 101)), 1009, 100},
		{"§10.4 fragments over the read limit", append(frame(false, websocket.OpBinary, make([]byte, 60)), frame(true, websocket.OpContinuation, make([]byte, 60))...), 1009, 100},
		{"§10.4 length claiming 2^62", []byte{0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 1009, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan error, 1)
			url := startServer(t, echoHandler(t, nil, c.limit, done))
			rc := dialRaw(t, url, "", nil)
			rc.send(c.wire)
			rc.expectClose(c.code)
			err := <-done
			if websocket.CloseStatus(err) != c.code {
				t.Fatalf("server's read error %v has status %v, want %v", err, websocket.CloseStatus(err), c.code)
			}
		})
	}
}

// RFC 7692 §6: RSV1 marks a compressed message on its first frame only. A
// continuation frame with it set fails the connection with 1002, also in a
// message sent uncompressed (TestCorruptCompressedData has a compressed one).
func TestContinuationWithRSV1(t *testing.T) {
	done := make(chan error, 1)
	opts := &websocket.AcceptOptions{Compression: &websocket.CompressionOptions{}}
	url := startServer(t, echoHandler(t, opts, 0, done))
	rc := dialRaw(t, url, "permessage-deflate", nil)
	// First a compressed message, which shows that compression is on.
	hi := frame(true, websocket.OpText, []byte{0xca, 0xc8, 0x04, 0x00}) // "hi", deflated
	hi[0] |= 0x40
	rc.send(hi)
	if h, _ := rc.next(); h.Opcode != websocket.OpText {
		t.Fatalf("echo of a compressed message: %v frame", h.Opcode)
	}
	cont := frame(true, websocket.OpContinuation, []byte("b"))
	cont[0] |= 0x40
	rc.send(frame(false, websocket.OpText, []byte("a")), cont)
	rc.expectClose(1002)
	if err := <-done; websocket.CloseStatus(err) != 1002 {
		t.Fatalf("server's read error %v, want status 1002", err)
	}
}

// §8.1 and §5.4: invalid UTF-8 fails the connection as soon as a fragment
// shows it, without waiting for the rest of the message.
func TestInvalidUTF8FailsFast(t *testing.T) {
	done := make(chan error, 1)
	url := startServer(t, echoHandler(t, nil, 0, done))
	rc := dialRaw(t, url, "", nil)
	rc.send(frame(false, websocket.OpText, []byte("valid")), frame(false, websocket.OpContinuation, []byte{0xf4, 0x90}))
	rc.expectClose(1007) // the final fragment was never sent
	<-done
}

// §5.4: control frames may come between the fragments of a message, and a
// ping is answered with a pong carrying the same payload (§5.5.2).
func TestFragmentsWithInterleavedControlFrames(t *testing.T) {
	url := startServer(t, echoHandler(t, nil, 0, nil))
	rc := dialRaw(t, url, "", nil)
	rc.send(
		frame(false, websocket.OpText, []byte("Hel")),
		frame(true, websocket.OpPing, []byte("are you there")),
		frame(false, websocket.OpContinuation, nil),
		frame(true, websocket.OpPong, []byte("unsolicited")),
		frame(true, websocket.OpContinuation, []byte("lo")),
	)
	h, p := rc.next()
	if h.Opcode != websocket.OpPong || string(p) != "are you there" {
		t.Fatalf("got %v %q, want the pong", h.Opcode, p)
	}
	h, p = rc.next()
	if h.Opcode != websocket.OpText || !h.Fin || string(p) != "Hello" {
		t.Fatalf("got %v fin=%v %q, want the echo", h.Opcode, h.Fin, p)
	}
	rc.send(frame(true, websocket.OpClose, []byte{0x03, 0xE8}))
	rc.expectClose(1000)
}

// A client may send its first frame right behind the handshake request;
// Accept must keep the bytes net/http already read.
func TestFirstFramePipelinedWithHandshake(t *testing.T) {
	url := startServer(t, echoHandler(t, nil, 0, nil))
	rc := dialRaw(t, url, "", frame(true, websocket.OpText, []byte("early")))
	h, p := rc.next()
	if h.Opcode != websocket.OpText || string(p) != "early" {
		t.Fatalf("got %v %q", h.Opcode, p)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	url := startServer(t, echoHandler(t, &websocket.AcceptOptions{OriginPatterns: []string{"*.allowed.example"}}, 0, nil))
	httpURL := "http" + strings.TrimPrefix(url, "ws")
	good := func() http.Header {
		return http.Header{
			"Upgrade":               {"websocket"},
			"Connection":            {"keep-alive, Upgrade"},
			"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
			"Sec-Websocket-Version": {"13"},
		}
	}
	cases := []struct {
		name   string
		method string
		edit   func(http.Header)
		status int
		header [2]string // a header the refusal must carry
	}{
		{"POST", "POST", func(h http.Header) {}, 405, [2]string{"Allow", "GET"}},
		{"no Upgrade", "GET", func(h http.Header) { h.Del("Upgrade") }, 426, [2]string{"Upgrade", "websocket"}},
		{"Upgrade: h2c", "GET", func(h http.Header) { h.Set("Upgrade", "h2c") }, 426, [2]string{}},
		{"no Connection: upgrade", "GET", func(h http.Header) { h.Set("Connection", "keep-alive") }, 400, [2]string{}},
		{"version 8", "GET", func(h http.Header) { h.Set("Sec-Websocket-Version", "8") }, 426, [2]string{"Sec-Websocket-Version", "13"}},
		{"no version", "GET", func(h http.Header) { h.Del("Sec-Websocket-Version") }, 426, [2]string{"Sec-Websocket-Version", "13"}},
		{"key of 15 bytes", "GET", func(h http.Header) { h.Set("Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25j") }, 400, [2]string{}},
		{"no key", "GET", func(h http.Header) { h.Del("Sec-Websocket-Key") }, 400, [2]string{}},
		{"two keys", "GET", func(h http.Header) { h.Add("Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==") }, 400, [2]string{}},
		{"cross-origin", "GET", func(h http.Header) { h.Set("Origin", "http://evil.example") }, 403, [2]string{}},
		{"origin null", "GET", func(h http.Header) { h.Set("Origin", "null") }, 403, [2]string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, httpURL, nil)
			req.Header = good()
			c.edit(req.Header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.status, body)
			}
			if !strings.Contains(string(body), "websocket:") {
				t.Fatalf("body %q does not say what was wrong", body)
			}
			if c.header[0] != "" && resp.Header.Get(c.header[0]) != c.header[1] {
				t.Fatalf("header %s = %q, want %q", c.header[0], resp.Header.Get(c.header[0]), c.header[1])
			}
		})
	}
	// Same origin, an allowed pattern, and no Origin at all succeed.
	for _, origin := range []string{"", "http://" + strings.TrimPrefix(url, "ws://"), "https://chat.allowed.example"} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, _, err := websocket.Dial(testContext(t), url, &websocket.DialOptions{HTTPHeader: h})
		if err != nil {
			t.Fatalf("origin %q: %v", origin, err)
		}
		c.CloseNow()
	}
}

// Dial reports a refused upgrade with the server's response.
func TestDialRefusedCarriesResponse(t *testing.T) {
	url := startServer(t, echoHandler(t, nil, 0, nil))
	_, resp, err := websocket.Dial(testContext(t), url, &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {"http://evil.example"}},
	})
	var herr *websocket.HandshakeError
	if !errors.As(err, &herr) || herr.Status != 403 || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("err = %v, resp = %v", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "evil.example") {
		t.Fatalf("body %q", body)
	}
}

func TestSubprotocolNegotiation(t *testing.T) {
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"v2.chat", "v1.chat"}})
		if err != nil {
			return
		}
		c.Write(r.Context(), websocket.MessageText, []byte(c.Subprotocol()))
		c.Close(websocket.StatusNormalClosure, "")
	})
	for _, c := range []struct {
		offer []string
		want  string
	}{
		{[]string{"v1.chat", "v2.chat"}, "v2.chat"}, // the server's preference wins
		{[]string{"v1.chat"}, "v1.chat"},
		{[]string{"other"}, ""},
		{nil, ""},
		{[]string{"V2.CHAT"}, ""}, // subprotocols are case-sensitive
	} {
		conn, _, err := websocket.Dial(testContext(t), url, &websocket.DialOptions{Subprotocols: c.offer})
		if err != nil {
			t.Fatal(err)
		}
		_, msg, err := conn.Read(testContext(t))
		if err != nil || string(msg) != c.want || conn.Subprotocol() != c.want {
			t.Fatalf("offer %v: server chose %q, client sees %q, %v; want %q", c.offer, msg, conn.Subprotocol(), err, c.want)
		}
		conn.CloseNow()
	}
}

// The closing handshake carries code and reason both ways, and CloseStatus
// reads them back from errors.
func TestCloseHandshake(t *testing.T) {
	serverErr := make(chan error, 1)
	url := startServer(t, echoHandler(t, nil, 0, serverErr))
	ctx := testContext(t)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	var hookCode websocket.StatusCode
	c.OnClose(func(code websocket.StatusCode, reason string) { hookCode = code })
	if err := c.Close(4000, "bye now"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err = <-serverErr
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4000 || ce.Reason != "bye now" {
		t.Fatalf("server saw %v", err)
	}
	if _, _, err := c.Read(ctx); !errors.Is(err, net.ErrClosed) && websocket.CloseStatus(err) != 4000 {
		t.Fatalf("read after Close: %v", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	if err := c.Close(1000, ""); err == nil {
		t.Fatal("second Close returned nil")
	}
	// The server's echo of our Close arrives while Close reads.
	if hookCode != 4000 {
		t.Fatalf("OnClose saw %v, want the echoed 4000", hookCode)
	}
}

func TestServerInitiatedClose(t *testing.T) {
	closed := make(chan error, 1)
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		closed <- c.Close(websocket.StatusGoingAway, "restarting")
	})
	ctx := testContext(t)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var hook websocket.CloseError
	c.OnClose(func(code websocket.StatusCode, reason string) {
		hook = websocket.CloseError{Code: code, Reason: reason}
	})
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway || !strings.Contains(err.Error(), "restarting") {
		t.Fatalf("client read: %v", err)
	}
	if hook.Code != websocket.StatusGoingAway || hook.Reason != "restarting" {
		t.Fatalf("OnClose saw %+v", hook)
	}
	if err := <-closed; err != nil {
		t.Fatalf("server Close: %v", err)
	}
}

// A peer that never answers our Close frame costs a bounded wait.
func TestCloseWithSilentPeerIsBounded(t *testing.T) {
	accepted := make(chan *websocket.Conn, 1)
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		accepted <- c
	})
	rc := dialRaw(t, url, "", nil)
	c := <-accepted
	start := time.Now()
	err := c.Close(websocket.StatusNormalClosure, "")
	if err == nil || time.Since(start) > 8*time.Second {
		t.Fatalf("Close returned %v after %v", err, time.Since(start))
	}
	h, _ := rc.next()
	if h.Opcode != websocket.OpClose {
		t.Fatalf("got %v, want close", h.Opcode)
	}
}

func TestPing(t *testing.T) {
	url := startServer(t, echoHandler(t, nil, 0, nil))
	ctx := testContext(t)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	pongs := make(chan []byte, 10)
	c.OnPong(func(p []byte) { pongs <- bytes.Clone(p) })
	readDone := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		readDone <- err
	}()
	for i := 0; i < 3; i++ {
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	if len(pongs) != 3 {
		t.Fatalf("OnPong saw %d pongs", len(pongs))
	}
	c.Close(websocket.StatusNormalClosure, "")
	if err := <-readDone; websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("reader ended with %v", err)
	}
}

// One reader and many writers at once: every message arrives whole and in
// per-writer order, and nothing interleaves.
func TestConcurrentWriters(t *testing.T) {
	for _, comp := range []*websocket.CompressionOptions{nil, {}, {ContextTakeover: true}} {
		url := startServer(t, echoHandler(t, &websocket.AcceptOptions{Compression: comp}, 0, nil))
		ctx := testContext(t)
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Compression: comp})
		if err != nil {
			t.Fatal(err)
		}
		const writers, perWriter = 8, 50
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < perWriter; i++ {
					msg := fmt.Sprintf("%d:%d:%s", w, i, strings.Repeat("x", (w*i*97)%3000))
					if i%2 == 0 {
						if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
							t.Error(err)
							return
						}
						continue
					}
					wr, err := c.Writer(ctx, websocket.MessageText)
					if err != nil {
						t.Error(err)
						return
					}
					for rest := msg; rest != ""; {
						k := min(len(rest), 700)
						wr.Write([]byte(rest[:k]))
						if k == 700 {
							c.Ping(context.Background()) // may interleave; must not corrupt
						}
						rest = rest[k:]
					}
					if err := wr.Close(); err != nil {
						t.Error(err)
						return
					}
				}
			}(w)
		}
		next := make([]int, writers)
		for got := 0; got < writers*perWriter; got++ {
			_, msg, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var w, i int
			if _, err := fmt.Sscanf(string(msg), "%d:%d:", &w, &i); err != nil || i != next[w] {
				t.Fatalf("message %q out of order (want %d from writer %d)", msg[:min(len(msg), 20)], next[w], w)
			}
			next[w]++
		}
		wg.Wait()
		c.Close(websocket.StatusNormalClosure, "")
	}
}

// A read whose context ends while waiting leaves the connection usable.
func TestReadContextCancelLeavesConnUsable(t *testing.T) {
	url := startServer(t, echoHandler(t, nil, 0, nil))
	ctx := testContext(t)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, _, err := c.Read(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read: %v, want deadline exceeded", err)
	}
	cancelled, cancel2 := context.WithCancel(ctx)
	time.AfterFunc(30*time.Millisecond, cancel2)
	if _, _, err := c.Read(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("read: %v, want canceled", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "still here" {
		t.Fatalf("read after cancel: %q, %v", msg, err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("Close after cancelled reads: %v", err)
	}
}

// A Reader abandoned mid-message leaves the rest to be skipped.
func TestAbandonedReaderIsSkipped(t *testing.T) {
	url := startServer(t, echoHandler(t, nil, 0, nil))
	ctx := testContext(t)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageBinary, pattern(100000, false))
	c.Write(ctx, websocket.MessageText, []byte("second"))
	_, r, err := c.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(r, make([]byte, 10))
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "second" {
		t.Fatalf("got %q, %v", msg, err)
	}
}

// CloseNow unblocks a pending read with an error that says so.
func TestCloseNowUnblocksRead(t *testing.T) {
	url := startServer(t, echoHandler(t, nil, 0, nil))
	ctx := testContext(t)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.CloseNow()
	c.CloseNow()
	err = <-errc
	if !errors.Is(err, net.ErrClosed) || websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
		t.Fatalf("read after CloseNow: %v (status %v)", err, websocket.CloseStatus(err))
	}
}

func Example() {
	// A server that echoes every message.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	defer srv.Close()

	// A client that says hello.
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageText, []byte("hello"))
	typ, msg, _ := c.Read(ctx)
	fmt.Println(typ, string(msg))
	fmt.Println(c.Close(websocket.StatusNormalClosure, "done"))
	// Output:
	// text hello
	// <nil>
}

func ExampleCloseStatus() {
	err := fmt.Errorf("reading: %w", websocket.CloseError{Code: websocket.StatusGoingAway, Reason: "bye"})
	fmt.Println(websocket.CloseStatus(err))
	fmt.Println(websocket.CloseStatus(context.Canceled))
	// Output:
	// 1001 (going away)
	// -1
}

// Close with no goroutine reading reads past unread messages, however far
// along, to the peer's Close frame.
func TestCloseSkipsUnreadMessages(t *testing.T) {
	for _, size := range []int{6, 70000} {
		url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			c.Write(r.Context(), websocket.MessageBinary, make([]byte, size))
			c.Write(r.Context(), websocket.MessageText, []byte("unread"))
			c.Read(r.Context())
		})
		ctx := testContext(t)
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if size > 1000 {
			// Leave the first message half read.
			_, r, err := c.Reader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			io.ReadFull(r, make([]byte, 100))
		}
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatalf("size %d: Close: %v", size, err)
		}
	}
}

// A read ended by its context's deadline reports context.DeadlineExceeded,
// even when the socket deadline fires before the context marks itself done.
func TestReadDeadlineReportsContextError(t *testing.T) {
	url := startServer(t, echoHandler(t, nil, 0, nil))
	ctx := testContext(t)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := 0; i < 100; i++ {
		short, cancel := context.WithTimeout(ctx, time.Millisecond)
		_, _, err := c.Read(short)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("read %d: %v, want context.DeadlineExceeded", i, err)
		}
	}
}
