package websocket_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// The fault matrix: how a connection ends when the peer or the network
// misbehaves, in both roles, and, where an application reads, whether it
// reads with a Read loop or with AwaitMessage. Our end is a real Conn; the
// other end is a raw TCP peer that speaks the opening handshake by hand and
// then writes what the case needs. Every case checks the error and its
// CloseStatus, bounds every wait (a hang fails the test instead of the
// run), and leaves no goroutine behind for TestMain's leak check.

// faultWait bounds every wait in these tests.
const faultWait = 10 * time.Second

// faultAwait receives from ch, failing the test if nothing comes within
// faultWait.
func faultAwait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(faultWait)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("no %s within %v", what, faultWait)
	}
	panic("unreachable")
}

// faultGo runs f in a goroutine and returns a channel with its result.
func faultGo[T any](f func() T) <-chan T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	return ch
}

// faultPeer is the raw end of a connection: it writes whatever bytes a test
// gives it and reads frames without interpreting them.
type faultPeer struct {
	nc     *net.TCPConn
	br     *bufio.Reader
	client bool // masks the frames it builds, as a client must
}

func (p *faultPeer) frame(fin bool, op websocket.Opcode, payload []byte) []byte {
	h := websocket.Header{Fin: fin, Opcode: op, Length: int64(len(payload))}
	if p.client {
		h.Masked = true
		h.MaskKey = [4]byte{0x11, 0x22, 0x33, 0x44}
	}
	b := websocket.AppendHeader(nil, h)
	start := len(b)
	b = append(b, payload...)
	if h.Masked {
		websocket.Mask(b[start:], h.MaskKey)
	}
	return b
}

func (p *faultPeer) closeFrame(code websocket.StatusCode, reason string) []byte {
	payload := binary.BigEndian.AppendUint16(nil, uint16(code))
	return p.frame(true, websocket.OpClose, append(payload, reason...))
}

func (p *faultPeer) send(b ...[]byte) error {
	_, err := p.nc.Write(bytes.Join(b, nil))
	return err
}

// readFrame reads the next frame and unmasks its payload.
func (p *faultPeer) readFrame() (websocket.Header, []byte, error) {
	h, err := websocket.ReadHeader(p.br)
	if err != nil {
		return h, nil, err
	}
	if h.Length > 4<<20 {
		return h, nil, fmt.Errorf("frame of %d bytes is larger than any test sends", h.Length)
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(p.br, payload); err != nil {
		return h, nil, err
	}
	if h.Masked {
		websocket.Mask(payload, h.MaskKey)
	}
	return h, payload, nil
}

// faultFrame is a frame a raw peer read.
type faultFrame struct {
	op      websocket.Opcode
	payload []byte
}

func (f faultFrame) closeCode() websocket.StatusCode {
	if f.op != websocket.OpClose || len(f.payload) < 2 {
		return 0
	}
	return websocket.StatusCode(binary.BigEndian.Uint16(f.payload))
}

// drain reads frames until the connection ends, for at most d. It returns
// the frames and how reading ended: nil when the other side closed the TCP
// connection (EOF, or a reset because it closed with data unread).
func (p *faultPeer) drain(d time.Duration) ([]faultFrame, error) {
	_ = p.nc.SetReadDeadline(time.Now().Add(d))
	var frames []faultFrame
	for {
		h, payload, err := p.readFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				err = nil
			}
			return frames, err
		}
		frames = append(frames, faultFrame{h.Opcode, payload})
	}
}

// reset closes the peer's socket with a TCP reset instead of a FIN.
func (p *faultPeer) reset() {
	_ = p.nc.SetLinger(0)
	_ = p.nc.Close()
}

// faultAcceptServer serves Accept with opts on loopback and hands each
// accepted Conn to the test.
func faultAcceptServer(t *testing.T, opts *websocket.AcceptOptions) (string, <-chan *websocket.Conn) {
	t.Helper()
	conns := make(chan *websocket.Conn, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, opts)
		if err != nil {
			return
		}
		conns <- c
	}))
	t.Cleanup(func() {
		srv.Close()
		for {
			select {
			case c := <-conns:
				c.CloseNow()
			default:
				return
			}
		}
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http"), conns
}

// faultTCP opens a TCP connection to the host of a ws:// URL.
func faultTCP(t *testing.T, url string) *net.TCPConn {
	t.Helper()
	host, _, _ := strings.Cut(strings.TrimPrefix(url, "ws://"), "/")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(faultWait))
	return nc.(*net.TCPConn)
}

const faultRequest = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// faultDialPeer connects a raw client to url and performs the opening
// handshake.
func faultDialPeer(t *testing.T, url string) *faultPeer {
	t.Helper()
	nc := faultTCP(t, url)
	if _, err := nc.Write([]byte(faultRequest)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v", resp.Status)
	}
	return &faultPeer{nc: nc, br: br, client: true}
}

// faultRawServer listens on loopback and runs serve on each TCP connection
// it accepts. serve must return within faultWait; the connection's
// deadline makes sure its I/O does.
func faultRawServer(t *testing.T, serve func(nc *net.TCPConn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			_ = nc.SetDeadline(time.Now().Add(faultWait))
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve(nc.(*net.TCPConn), bufio.NewReader(nc))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return "ws://" + ln.Addr().String() + "/"
}

// faultUpgrade reads a handshake request and answers it with 101.
func faultUpgrade(nc *net.TCPConn, br *bufio.Reader) (*faultPeer, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + websocket.AcceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
	if _, err := nc.Write([]byte(resp)); err != nil {
		return nil, err
	}
	return &faultPeer{nc: nc, br: br}, nil
}

// faultRoles are the two ends our Conn can be: "server" is Accept facing a
// raw client, "client" is Dial facing a raw server.
var faultRoles = []string{"server", "client"}

// faultPair connects our Conn in role to a raw peer. Both are closed when
// the test ends.
func faultPair(t *testing.T, role string) (*websocket.Conn, *faultPeer) {
	t.Helper()
	var ours *websocket.Conn
	var peer *faultPeer
	switch role {
	case "server":
		url, conns := faultAcceptServer(t, nil)
		peer = faultDialPeer(t, url)
		ours = faultAwait(t, conns, "accepted connection")
	case "client":
		peers := make(chan *faultPeer, 1)
		url := faultRawServer(t, func(nc *net.TCPConn, br *bufio.Reader) {
			p, err := faultUpgrade(nc, br)
			if err != nil {
				nc.Close()
				p = nil
			}
			peers <- p
		})
		ctx, cancel := context.WithTimeout(context.Background(), faultWait)
		defer cancel()
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		ours = c
		peer = faultAwait(t, peers, "raw server connection")
		if peer == nil {
			t.Fatal("raw server failed the handshake")
		}
	default:
		panic(role)
	}
	t.Cleanup(func() {
		ours.CloseNow()
		peer.nc.Close()
	})
	return ours, peer
}

// faultReadAll reads data messages until an error and returns them with
// the error.
func faultReadAll(c *websocket.Conn) ([]string, error) {
	var msgs []string
	for {
		_, msg, err := c.Read(context.Background())
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, string(msg))
	}
}

type faultReadResult struct {
	msgs []string
	err  error
}

// faultReader reads c in a loop on a goroutine of its own, as most
// applications do, and delivers the messages and the error that ended the
// loop.
func faultReader(c *websocket.Conn) <-chan faultReadResult {
	return faultGo(func() faultReadResult {
		msgs, err := faultReadAll(c)
		return faultReadResult{msgs, err}
	})
}

// faultAwaitReader reads c as an application serving it with
// [websocket.Conn.AwaitMessage] does: the function reads one message each
// time it is called and awaits the next, until a read fails. It delivers
// what faultReader does, and fails the read if the function is ever called
// while it still runs.
func faultAwaitReader(c *websocket.Conn) <-chan faultReadResult {
	done := make(chan faultReadResult, 2)
	var (
		msgs    []string // only the function, which runs once at a time, touches it
		running atomic.Bool
		serve   func()
	)
	serve = func() {
		if !running.CompareAndSwap(false, true) {
			done <- faultReadResult{nil, errors.New("AwaitMessage called the function while it was still running")}
			return
		}
		_, msg, err := c.Read(context.Background())
		running.Store(false)
		if err != nil {
			done <- faultReadResult{msgs, err}
			return
		}
		msgs = append(msgs, string(msg))
		c.AwaitMessage(serve)
	}
	c.AwaitMessage(serve)
	return done
}

// faultReaders are the ways an application reads, for the cases that hold
// for both: a Read loop, and AwaitMessage (which on Linux handles control
// frames itself, and calls the function only for data messages and the end
// of the connection). A name of "" leaves a subtest's name as it was before
// AwaitMessage.
var faultReaders = []struct {
	name  string
	start func(*websocket.Conn) <-chan faultReadResult
}{
	{"", faultReader},
	{"await", faultAwaitReader},
}

// faultName appends reader, if not empty, to a subtest name.
func faultName(name, reader string) string {
	if reader == "" {
		return name
	}
	return name + "/" + reader
}

// checkBroken checks that c was torn down: a write and a Close fail at
// once, saying the connection is closed.
func checkBroken(t *testing.T, c *websocket.Conn) {
	t.Helper()
	start := time.Now()
	if err := c.Write(context.Background(), websocket.MessageText, []byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after the connection broke: %v, want an error wrapping net.ErrClosed", err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Close after the connection broke: %v, want an error wrapping net.ErrClosed", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("writing to and closing a broken connection took %v", d)
	}
}

// TestFaultPeerVanishes ends the peer's TCP connection, with a FIN or a
// reset, at every point of a frame, for a Read loop and for AwaitMessage.
// The reader gets status 1006: for a FIN, an unexpected EOF after every
// complete message that came before it; for a reset, ECONNRESET. The
// connection is then torn down.
func TestFaultPeerVanishes(t *testing.T) {
	big := make([]byte, 300)
	stages := []struct {
		name string
		wire func(p *faultPeer) []byte
		want []string // the messages delivered before the error, for a FIN
	}{
		{"between messages", func(p *faultPeer) []byte { return p.frame(true, websocket.OpText, []byte("complete")) }, []string{"complete"}},
		{"mid header", func(p *faultPeer) []byte { return p.frame(true, websocket.OpBinary, big)[:1] }, nil},
		{"mid extended length", func(p *faultPeer) []byte { return p.frame(true, websocket.OpBinary, big)[:3] }, nil},
		{"mid payload", func(p *faultPeer) []byte { return p.frame(true, websocket.OpBinary, big)[:100] }, nil},
		{"mid fragmented message", func(p *faultPeer) []byte { return p.frame(false, websocket.OpText, []byte("first half")) }, nil},
		{"mid control frame", func(p *faultPeer) []byte { return p.frame(true, websocket.OpPing, []byte("ping payload"))[:8] }, nil},
		{"mid close frame", func(p *faultPeer) []byte { return p.closeFrame(websocket.StatusNormalClosure, "bye")[:3] }, nil},
	}
	for _, role := range faultRoles {
		for _, stage := range stages {
			for _, how := range []string{"FIN", "RST"} {
				for _, reader := range faultReaders {
					t.Run(faultName(role+"/"+stage.name+"/"+how, reader.name), func(t *testing.T) {
						ours, peer := faultPair(t, role)
						read := reader.start(ours)
						if err := peer.send(stage.wire(peer)); err != nil {
							t.Fatal(err)
						}
						if how == "RST" {
							// Let the bytes arrive first, so the reset
							// cuts a frame rather than racing its start.
							time.Sleep(10 * time.Millisecond)
							peer.reset()
						} else {
							peer.nc.Close()
						}
						res := faultAwait(t, read, "read error")
						if got := websocket.CloseStatus(res.err); got != websocket.StatusAbnormalClosure {
							t.Fatalf("read error %v has status %v, want 1006", res.err, got)
						}
						if !strings.HasPrefix(res.err.Error(), "websocket: ") {
							t.Errorf("error %q does not say it is from websocket", res.err)
						}
						switch how {
						case "FIN":
							if !errors.Is(res.err, io.ErrUnexpectedEOF) {
								t.Errorf("read error %v, want one wrapping io.ErrUnexpectedEOF", res.err)
							}
							if fmt.Sprint(res.msgs) != fmt.Sprint(stage.want) {
								t.Errorf("delivered %q, want %q", res.msgs, stage.want)
							}
						case "RST":
							if !errors.Is(res.err, syscall.ECONNRESET) {
								t.Errorf("read error %v, want one wrapping ECONNRESET", res.err)
							}
						}
						// The failure sticks.
						if _, _, err := ours.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
							t.Errorf("second read: %v, want the same 1006 failure", err)
						}
						checkBroken(t, ours)
					})
				}
			}
		}
	}
}

// TestFaultProtocolViolations sends our Conn, in both roles and read by a
// Read loop and by AwaitMessage, each violation RFC 6455 says must fail the
// connection, right behind a valid message. The valid message is delivered;
// the read then fails with the status §7.4.1 prescribes, and the peer gets
// one Close frame with that status before the TCP connection closes. With
// AwaitMessage the violations in control frames are found by the await path
// itself, before the function runs.
func TestFaultProtocolViolations(t *testing.T) {
	long := make([]byte, 126)
	// header builds a frame header by hand, with a masking key when the
	// peer is a client.
	header := func(p *faultPeer, b0, b1 byte, ext ...byte) []byte {
		if p.client {
			b1 |= 0x80
			ext = append(ext, 0x11, 0x22, 0x33, 0x44)
		}
		return append([]byte{b0, b1}, ext...)
	}
	withBits := func(bits byte, op websocket.Opcode) func(p *faultPeer) []byte {
		return func(p *faultPeer) []byte {
			b := p.frame(true, op, []byte("x"))
			b[0] |= bits
			return b
		}
	}
	frame := func(fin bool, op websocket.Opcode, payload ...byte) func(p *faultPeer) []byte {
		return func(p *faultPeer) []byte { return p.frame(fin, op, payload) }
	}
	cases := []struct {
		name  string
		wire  func(p *faultPeer) []byte
		code  websocket.StatusCode
		limit int64
	}{
		{"§5.1 frame masked the wrong way", func(p *faultPeer) []byte {
			q := *p
			q.client = !p.client
			return q.frame(true, websocket.OpText, []byte("hi"))
		}, 1002, 0},
		{"§5.2 RSV1 without extension", withBits(0x40, websocket.OpText), 1002, 0},
		{"§5.2 RSV2", withBits(0x20, websocket.OpBinary), 1002, 0},
		{"§5.2 RSV3 on a ping", withBits(0x10, websocket.OpPing), 1002, 0},
		{"§5.2 reserved opcode 3", frame(true, 3), 1002, 0},
		{"§5.2 reserved control opcode 11", frame(true, 11), 1002, 0},
		{"§5.2 length with top bit set", func(p *faultPeer) []byte { return header(p, 0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1) }, 1002, 0},
		{"§5.5 ping of 126 bytes", frame(true, websocket.OpPing, long...), 1002, 0},
		{"§5.5 fragmented ping", frame(false, websocket.OpPing), 1002, 0},
		{"§5.5 fragmented pong", frame(false, websocket.OpPong, 'x'), 1002, 0},
		{"§5.4 continuation with no message", frame(true, websocket.OpContinuation, 'x'), 1002, 0},
		{"§5.4 new message inside a fragmented one", func(p *faultPeer) []byte {
			return append(p.frame(false, websocket.OpText, []byte("a")), p.frame(true, websocket.OpText, []byte("b"))...)
		}, 1002, 0},
		{"§5.5.1 close payload of one byte", frame(true, websocket.OpClose, 3), 1002, 0},
		{"§7.4.1 close code 1005", frame(true, websocket.OpClose, 0x03, 0xED), 1002, 0},
		{"§7.4.1 close code 999", frame(true, websocket.OpClose, 0x03, 0xE7), 1002, 0},
		{"§7.4.1 close code 5000", frame(true, websocket.OpClose, 0x13, 0x88), 1002, 0},
		{"§8.1 invalid UTF-8 text", frame(true, websocket.OpText, 'a', 0xff), 1007, 0},
		{"§8.1 text ending mid-sequence", frame(true, websocket.OpText, 'a', 0xce), 1007, 0},
		{"§5.5.1 close reason not UTF-8", frame(true, websocket.OpClose, 0x03, 0xE8, 0xff), 1007, 0},
		{"§10.4 message over the read limit", frame(true, websocket.OpBinary, make([]byte, 101)...), 1009, 100},
		{"§10.4 fragments over the read limit", func(p *faultPeer) []byte {
			return append(p.frame(false, websocket.OpBinary, make([]byte, 60)), p.frame(true, websocket.OpContinuation, make([]byte, 60))...)
		}, 1009, 100},
		{"§10.4 length claiming 2^62", func(p *faultPeer) []byte { return header(p, 0x82, 127, 0x40, 0, 0, 0, 0, 0, 0, 0) }, 1009, 0},
	}
	for _, role := range faultRoles {
		for _, c := range cases {
			for _, reader := range faultReaders {
				t.Run(faultName(role+"/"+c.name, reader.name), func(t *testing.T) {
					ours, peer := faultPair(t, role)
					if c.limit != 0 {
						ours.SetReadLimit(c.limit)
					}
					read := reader.start(ours)
					if err := peer.send(peer.frame(true, websocket.OpText, []byte("valid")), c.wire(peer)); err != nil {
						t.Fatal(err)
					}
					frames, err := peer.drain(faultWait)
					if err != nil || len(frames) != 1 || frames[0].closeCode() != c.code {
						t.Errorf("peer read %v, %v; want one Close frame with %v, then the TCP connection closed", frames, err, c.code)
					}
					peer.nc.Close() // so that our side stops lingering
					res := faultAwait(t, read, "read error")
					if websocket.CloseStatus(res.err) != c.code || fmt.Sprint(res.msgs) != "[valid]" {
						t.Fatalf("read %q, then %v (status %v); want \"valid\", then status %v", res.msgs, res.err, websocket.CloseStatus(res.err), c.code)
					}
					checkBroken(t, ours)
				})
			}
		}
	}
}

// TestFaultServerHandshake: a client that stops mid-request never reaches
// Accept. Accept sits behind net/http, so a stalled request is bounded by
// the http.Server's ReadHeaderTimeout; a client that vanishes right after a
// complete request leaves a Conn whose first read reports 1006.
func TestFaultServerHandshake(t *testing.T) {
	var handled atomic.Int32
	conns := make(chan *websocket.Conn, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		conns <- c
	}))
	srv.Config.ReadHeaderTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	half := faultRequest[:len(faultRequest)/2]

	t.Run("half a request then close", func(t *testing.T) {
		nc := faultTCP(t, url)
		nc.Write([]byte(half))
		nc.Close()
	})
	t.Run("half a request then stall", func(t *testing.T) {
		nc := faultTCP(t, url)
		nc.Write([]byte(half))
		start := time.Now()
		// The server gives up on the request and closes the connection.
		n, err := io.Copy(io.Discard, nc)
		if err != nil || time.Since(start) > 3*time.Second {
			t.Fatalf("server kept a stalled request open: read %d bytes, %v after %v", n, err, time.Since(start))
		}
	})
	t.Run("whole request then close", func(t *testing.T) {
		nc := faultTCP(t, url)
		nc.Write([]byte(faultRequest))
		nc.Close()
		c := faultAwait(t, conns, "accepted connection")
		_, _, err := c.Read(context.Background())
		if websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
			t.Fatalf("read on a connection whose client vanished: %v, want 1006", err)
		}
		c.CloseNow()
	})
	if n := handled.Load(); n != 1 {
		t.Fatalf("the handler ran %d times; only the complete request should reach it", n)
	}
}

// TestFaultDialHandshake: a server that stops mid-response makes Dial fail
// promptly when it closes, and when ctx ends when it stalls.
func TestFaultDialHandshake(t *testing.T) {
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
	cases := []struct {
		name    string
		serve   func(nc *net.TCPConn, br *bufio.Reader)
		timeout time.Duration // of Dial's context
		cancel  bool          // cancel the context instead
		want    error
	}{
		{"half a response then close", func(nc *net.TCPConn, br *bufio.Reader) {
			http.ReadRequest(br)
			nc.Write([]byte(resp))
			nc.Close()
		}, faultWait, false, io.ErrUnexpectedEOF},
		{"half a response then reset", func(nc *net.TCPConn, br *bufio.Reader) {
			http.ReadRequest(br)
			nc.Write([]byte(resp))
			(&faultPeer{nc: nc}).reset()
		}, faultWait, false, nil},
		{"half a response then stall", func(nc *net.TCPConn, br *bufio.Reader) {
			http.ReadRequest(br)
			nc.Write([]byte(resp))
			io.Copy(io.Discard, nc) // until Dial gives up
			nc.Close()
		}, 300 * time.Millisecond, false, context.DeadlineExceeded},
		{"no response, cancelled", func(nc *net.TCPConn, br *bufio.Reader) {
			io.Copy(io.Discard, br)
			nc.Close()
		}, faultWait, true, context.Canceled},
		{"no response, closed", func(nc *net.TCPConn, br *bufio.Reader) {
			http.ReadRequest(br)
			nc.Close()
		}, faultWait, false, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := faultRawServer(t, c.serve)
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			defer cancel()
			if c.cancel {
				time.AfterFunc(200*time.Millisecond, cancel)
			}
			start := time.Now()
			conn, resp, err := websocket.Dial(ctx, url, nil)
			elapsed := time.Since(start)
			if err == nil {
				conn.CloseNow()
				t.Fatal("Dial succeeded")
			}
			if conn != nil || resp != nil {
				t.Errorf("Dial returned a Conn or response with error %v", err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("Dial: %v, want an error wrapping %v", err, c.want)
			}
			if websocket.CloseStatus(err) != -1 {
				t.Errorf("CloseStatus(%v) = %v, want -1 for a handshake failure", err, websocket.CloseStatus(err))
			}
			if !strings.HasPrefix(err.Error(), "websocket: ") {
				t.Errorf("error %q does not say it is from websocket", err)
			}
			if elapsed > 3*time.Second {
				t.Errorf("Dial took %v", elapsed)
			}
		})
	}
	t.Run("101 then close", func(t *testing.T) {
		url := faultRawServer(t, func(nc *net.TCPConn, br *bufio.Reader) {
			faultUpgrade(nc, br)
			nc.Close()
		})
		ctx, cancel := context.WithTimeout(context.Background(), faultWait)
		defer cancel()
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusAbnormalClosure || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("read: %v, want 1006 with an unexpected EOF", err)
		}
	})
}

// TestFaultAwaitFirstFrameWithHandshake: a peer may send its first frame
// in the same packet as its half of the opening handshake, and then fall
// silent. The frame is already buffered when the Conn is made, so the
// socket never turns readable for it: AwaitMessage must look at what is
// buffered and call the function at once, in both roles.
func TestFaultAwaitFirstFrameWithHandshake(t *testing.T) {
	for _, role := range faultRoles {
		t.Run(role, func(t *testing.T) {
			var ours *websocket.Conn
			switch role {
			case "server":
				url, conns := faultAcceptServer(t, nil)
				nc := faultTCP(t, url)
				p := &faultPeer{nc: nc, client: true}
				if _, err := nc.Write(append([]byte(faultRequest), p.frame(true, websocket.OpText, []byte("early"))...)); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
				if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
					t.Fatalf("handshake: %v, %v", resp, err)
				}
				ours = faultAwait(t, conns, "accepted connection")
			case "client":
				url := faultRawServer(t, func(nc *net.TCPConn, br *bufio.Reader) {
					defer nc.Close()
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
						"Sec-WebSocket-Accept: " + websocket.AcceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
					p := &faultPeer{nc: nc}
					if _, err := nc.Write(append([]byte(resp), p.frame(true, websocket.OpText, []byte("early"))...)); err != nil {
						return
					}
					io.Copy(io.Discard, br) // silent until the client goes
				})
				ctx, cancel := context.WithTimeout(context.Background(), faultWait)
				defer cancel()
				c, _, err := websocket.Dial(ctx, url, nil)
				if err != nil {
					t.Fatal(err)
				}
				ours = c
			}
			defer ours.CloseNow()
			msgs, _ := faultMessages(ours, true)
			if got := faultAwait(t, msgs, "the first message"); got != "early" {
				t.Fatalf("awaiting function read %q, want \"early\"", got)
			}
		})
	}
}

// TestFaultMidClose breaks the closing handshake at each step, with our
// side read by a Read loop, by AwaitMessage, or (where Close reads itself)
// by nobody.
func TestFaultMidClose(t *testing.T) {
	t.Parallel()
	for _, role := range faultRoles {
		t.Run(role, func(t *testing.T) {
			// The peer sends Close and vanishes without reading our
			// answer: the reader still gets the peer's status.
			for _, reader := range faultReaders {
				t.Run(faultName("peer closes and vanishes", reader.name), func(t *testing.T) {
					ours, peer := faultPair(t, role)
					read := reader.start(ours)
					peer.send(peer.closeFrame(4001, "bye"))
					peer.nc.Close()
					err := faultAwait(t, read, "read error").err
					var ce websocket.CloseError
					if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "bye" {
						t.Fatalf("read: %v, want the peer's CloseError 4001 \"bye\"", err)
					}
					if _, _, err := ours.Read(context.Background()); websocket.CloseStatus(err) != 4001 {
						t.Errorf("second read: %v, want the same CloseError", err)
					}
					checkBroken(t, ours)
				})
			}
			// We send Close; the peer reads it and drops the TCP
			// connection without answering. Close must notice at once
			// rather than wait out its five seconds.
			for _, how := range []string{"FIN", "RST"} {
				for _, reading := range []string{"false", "true", "await"} {
					name := fmt.Sprintf("peer vanishes after our Close/%s/reader=%v", how, reading)
					t.Run(name, func(t *testing.T) {
						ours, peer := faultPair(t, role)
						var read <-chan faultReadResult
						switch reading {
						case "true":
							read = faultReader(ours)
						case "await":
							read = faultAwaitReader(ours)
						}
						start := time.Now()
						closed := faultGo(func() error { return ours.Close(websocket.StatusNormalClosure, "") })
						h, _, err := peer.readFrame()
						if err != nil || h.Opcode != websocket.OpClose {
							t.Fatalf("peer read %v, %v; want our Close frame", h.Opcode, err)
						}
						if how == "RST" {
							peer.reset()
						} else {
							peer.nc.Close()
						}
						err = faultAwait(t, closed, "Close")
						if websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
							t.Fatalf("Close: %v (status %v); want 1006, the peer never answered", err, websocket.CloseStatus(err))
						}
						if d := time.Since(start); d > 2*time.Second {
							t.Errorf("Close took %v to notice the peer was gone", d)
						}
						if read != nil {
							res := faultAwait(t, read, "read error")
							if websocket.CloseStatus(res.err) != websocket.StatusAbnormalClosure {
								t.Errorf("reader: %v, want 1006", res.err)
							}
						}
						if _, _, err := ours.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
							t.Errorf("read after Close: %v, want 1006", err)
						}
					})
				}
			}
			// The peer answers our Close but keeps the TCP connection
			// open: a server closes at once; a client waits a moment
			// for the server to go first (§7.1.1), then closes itself.
			// An application awaiting a message is then told of the
			// close.
			for _, reader := range []string{"", "await"} {
				t.Run(faultName("peer answers and lingers", reader), func(t *testing.T) {
					ours, peer := faultPair(t, role)
					var read <-chan faultReadResult
					if reader == "await" {
						read = faultAwaitReader(ours)
					}
					start := time.Now()
					closed := faultGo(func() error { return ours.Close(websocket.StatusNormalClosure, "") })
					h, _, err := peer.readFrame()
					if err != nil || h.Opcode != websocket.OpClose {
						t.Fatalf("peer read %v, %v; want our Close frame", h.Opcode, err)
					}
					peer.send(peer.closeFrame(websocket.StatusNormalClosure, ""))
					if err := faultAwait(t, closed, "Close"); err != nil {
						t.Fatalf("Close: %v", err)
					}
					if d := time.Since(start); d > 3*time.Second {
						t.Errorf("Close took %v", d)
					}
					frames, err := peer.drain(3 * time.Second)
					if err != nil || len(frames) != 0 {
						t.Errorf("after the handshake the peer read %v, %v; want EOF", frames, err)
					}
					if read != nil {
						if res := faultAwait(t, read, "read error"); websocket.CloseStatus(res.err) != websocket.StatusNormalClosure || len(res.msgs) != 0 {
							t.Errorf("awaiting function read %q, then %v; want only the peer's CloseError 1000", res.msgs, res.err)
						}
					}
				})
			}
		})
	}
}

// TestFaultClientWaitsForServerClose: a client's Close waits, for a
// moment, for the server to close the TCP connection first (§7.1.1), also
// when another goroutine's read, not Close itself, takes the server's
// answer.
func TestFaultClientWaitsForServerClose(t *testing.T) {
	const serverDelay = 300 * time.Millisecond
	for _, reader := range []string{"", "read", "await"} {
		t.Run(faultName("client", reader), func(t *testing.T) {
			ours, peer := faultPair(t, "client")
			var read <-chan faultReadResult
			switch reader {
			case "read":
				read = faultReader(ours)
			case "await":
				read = faultAwaitReader(ours)
			}
			start := time.Now()
			var took time.Duration
			closed := faultGo(func() error {
				err := ours.Close(websocket.StatusNormalClosure, "")
				took = time.Since(start)
				return err
			})
			if h, _, err := peer.readFrame(); err != nil || h.Opcode != websocket.OpClose {
				t.Fatalf("server read %v, %v; want the client's Close frame", h.Opcode, err)
			}
			peer.send(peer.closeFrame(websocket.StatusNormalClosure, ""))
			time.Sleep(serverDelay)
			peer.nc.Close()
			if err := faultAwait(t, closed, "Close"); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if took < serverDelay {
				t.Errorf("Close returned after %v, before the server closed the connection (%v)", took, serverDelay)
			}
			if read != nil {
				if res := faultAwait(t, read, "read error"); websocket.CloseStatus(res.err) != websocket.StatusNormalClosure {
					t.Errorf("reader: %v, want the server's CloseError 1000", res.err)
				}
			}
		})
	}
}

// TestFaultHalfClose: the peer shuts down its sending side without a Close
// frame. RFC 6455 §7.1.5 makes that an abnormal closure (1006), and a
// connection that has failed is torn down, so:
//   - until our reader sees the EOF, writes still reach the peer (its
//     receiving side is open);
//   - the read then fails with 1006 and an unexpected EOF;
//   - writes after that fail with net.ErrClosed, and the peer sees the TCP
//     connection close without a Close frame (we cannot send one with
//     1006, §7.4.1).
func TestFaultHalfClose(t *testing.T) {
	for _, role := range faultRoles {
		t.Run(role, func(t *testing.T) {
			ours, peer := faultPair(t, role)
			if err := peer.nc.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := ours.Write(ctx, websocket.MessageText, []byte("still open")); err != nil {
				t.Fatalf("write before the EOF was read: %v", err)
			}
			h, payload, err := peer.readFrame()
			if err != nil || h.Opcode != websocket.OpText || string(payload) != "still open" {
				t.Fatalf("peer read %v %q, %v", h.Opcode, payload, err)
			}
			_, _, err = ours.Read(ctx)
			if websocket.CloseStatus(err) != websocket.StatusAbnormalClosure || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("read: %v, want 1006 with an unexpected EOF", err)
			}
			frames, err := peer.drain(2 * time.Second)
			if err != nil || len(frames) != 0 {
				t.Errorf("peer read %v, %v; want the TCP connection closed", frames, err)
			}
			checkBroken(t, ours)
		})
		// An application awaiting a message reads as soon as the EOF
		// arrives, so the window for writes closes at once: the
		// function is told 1006 with an unexpected EOF, and the rest
		// is as above.
		t.Run(role+"/await", func(t *testing.T) {
			ours, peer := faultPair(t, role)
			read := faultAwaitReader(ours)
			if err := peer.nc.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			res := faultAwait(t, read, "read error")
			if websocket.CloseStatus(res.err) != websocket.StatusAbnormalClosure || !errors.Is(res.err, io.ErrUnexpectedEOF) || len(res.msgs) != 0 {
				t.Fatalf("awaiting function read %q, then %v; want 1006 with an unexpected EOF", res.msgs, res.err)
			}
			frames, err := peer.drain(2 * time.Second)
			if err != nil || len(frames) != 0 {
				t.Errorf("peer read %v, %v; want the TCP connection closed", frames, err)
			}
			checkBroken(t, ours)
		})
	}
}

// TestFaultSilentPeer: a peer that reads but never answers our Close frame
// costs Close its bounded wait (five seconds), even when the peer keeps
// sending data and pings meanwhile; then the connection is torn down. An
// application awaiting messages meanwhile gets the chatter, then is told
// the connection closed. The eight cases wait at the same time rather than
// as parallel subtests, which -parallel (GOMAXPROCS, 2 in CI) would run two
// at a time.
func TestFaultSilentPeer(t *testing.T) {
	t.Parallel()
	type drained struct {
		frames []faultFrame
		err    error
	}
	type result struct {
		name     string
		err      error
		elapsed  time.Duration
		peerRead <-chan drained
		read     <-chan faultReadResult // from an awaiting application, or nil
	}
	var results []<-chan result
	for _, role := range faultRoles {
		for _, chatty := range []bool{false, true} {
			for _, await := range []bool{false, true} {
				name := fmt.Sprintf("%s/chatty=%v/await=%v", role, chatty, await)
				ours, peer := faultPair(t, role)
				var read <-chan faultReadResult
				if await {
					read = faultAwaitReader(ours)
				}
				peerRead := faultGo(func() drained {
					frames, err := peer.drain(faultWait)
					return drained{frames, err}
				})
				results = append(results, faultGo(func() result {
					stop := make(chan struct{})
					var chatter sync.WaitGroup
					if chatty {
						chatter.Add(1)
						go func() {
							defer chatter.Done()
							for {
								select {
								case <-stop:
									return
								case <-time.After(20 * time.Millisecond):
								}
								err := peer.send(peer.frame(true, websocket.OpText, []byte("chatter")), peer.frame(true, websocket.OpPing, []byte("ping")))
								if err != nil {
									return
								}
							}
						}()
					}
					start := time.Now()
					err := ours.Close(websocket.StatusNormalClosure, "")
					elapsed := time.Since(start)
					close(stop)
					chatter.Wait()
					return result{name, err, elapsed, peerRead, read}
				}))
			}
		}
	}
	for _, ch := range results {
		r := faultAwait(t, ch, "Close")
		if r.err == nil {
			t.Errorf("%s: Close returned nil, but the peer never answered", r.name)
		} else if !strings.Contains(r.err.Error(), "did not answer") {
			t.Errorf("%s: Close: %v, want an error saying the peer did not answer", r.name, r.err)
		}
		if r.elapsed < 4*time.Second || r.elapsed > 7*time.Second {
			t.Errorf("%s: Close returned after %v, want about five seconds", r.name, r.elapsed)
		}
		d := faultAwait(t, r.peerRead, "peer to see the connection close")
		if d.err != nil {
			t.Errorf("%s: peer: %v, want the TCP connection closed", r.name, d.err)
			continue
		}
		var codes []websocket.StatusCode
		for _, f := range d.frames {
			if f.op == websocket.OpClose {
				codes = append(codes, f.closeCode())
			}
		}
		if len(codes) != 1 || codes[0] != websocket.StatusNormalClosure {
			t.Errorf("%s: peer got Close frames %v, want one with 1000", r.name, codes)
		}
		if r.read != nil {
			res := faultAwait(t, r.read, "awaiting function to be told")
			if !errors.Is(res.err, net.ErrClosed) {
				t.Errorf("%s: awaiting function's read: %v, want net.ErrClosed", r.name, res.err)
			}
			for _, m := range res.msgs {
				if m != "chatter" {
					t.Errorf("%s: awaiting function read %q", r.name, m)
				}
			}
		}
	}
}

// TestFaultDataAfterClose: frames the peer sends after its Close frame are
// neither delivered nor answered.
func TestFaultDataAfterClose(t *testing.T) {
	t.Parallel()
	for _, role := range faultRoles {
		t.Run(role+"/peer closes", func(t *testing.T) {
			ours, peer := faultPair(t, role)
			peer.send(
				peer.frame(true, websocket.OpText, []byte("before")),
				peer.closeFrame(websocket.StatusNormalClosure, "done"),
				peer.frame(true, websocket.OpText, []byte("after")),
				peer.frame(true, websocket.OpPing, []byte("late ping")),
			)
			ctx := context.Background()
			if _, msg, err := ours.Read(ctx); err != nil || string(msg) != "before" {
				t.Fatalf("read %q, %v; want \"before\"", msg, err)
			}
			for i := 0; i < 2; i++ {
				_, msg, err := ours.Read(ctx)
				var ce websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure || ce.Reason != "done" {
					t.Fatalf("read %d after the Close frame: %q, %v; want the CloseError", i, msg, err)
				}
			}
			frames, err := peer.drain(3 * time.Second)
			if err != nil || len(frames) != 1 || frames[0].closeCode() != websocket.StatusNormalClosure {
				t.Fatalf("peer read %v, %v; want only the echo of its Close, then EOF", frames, err)
			}
		})
		// The same, read by an application awaiting messages: the
		// Close frame is handled without it, and it is told of it once.
		t.Run(role+"/peer closes/await", func(t *testing.T) {
			ours, peer := faultPair(t, role)
			read := faultAwaitReader(ours)
			peer.send(
				peer.frame(true, websocket.OpText, []byte("before")),
				peer.closeFrame(websocket.StatusNormalClosure, "done"),
				peer.frame(true, websocket.OpText, []byte("after")),
				peer.frame(true, websocket.OpPing, []byte("late ping")),
			)
			res := faultAwait(t, read, "read error")
			var ce websocket.CloseError
			if fmt.Sprint(res.msgs) != "[before]" || !errors.As(res.err, &ce) || ce.Code != websocket.StatusNormalClosure || ce.Reason != "done" {
				t.Fatalf("awaiting function read %q, then %v; want \"before\", then the CloseError", res.msgs, res.err)
			}
			if _, msg, err := ours.Read(context.Background()); !errors.As(err, &ce) || ce.Reason != "done" {
				t.Fatalf("read after the Close frame: %q, %v; want the CloseError", msg, err)
			}
			frames, err := peer.drain(3 * time.Second)
			if err != nil || len(frames) != 1 || frames[0].closeCode() != websocket.StatusNormalClosure {
				t.Fatalf("peer read %v, %v; want only the echo of its Close, then EOF", frames, err)
			}
		})
		t.Run(role+"/we close", func(t *testing.T) {
			ours, peer := faultPair(t, role)
			closeWithMessageInFlight(t, ours, peer)
			if _, msg, err := ours.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("read after Close: %q, %v; want the peer's CloseError", msg, err)
			}
		})
		// The same while the application awaits messages: it may get
		// the message in flight (lossless_test.go: what arrives after
		// our Close may be discarded), never what followed the peer's
		// Close frame, and is then told of the peer's Close.
		t.Run(role+"/we close/await", func(t *testing.T) {
			ours, peer := faultPair(t, role)
			read := faultAwaitReader(ours)
			closeWithMessageInFlight(t, ours, peer)
			res := faultAwait(t, read, "read error")
			if got := fmt.Sprint(res.msgs); (got != "[]" && got != "[in flight]") || websocket.CloseStatus(res.err) != websocket.StatusNormalClosure {
				t.Fatalf("awaiting function read %q, then %v; want at most \"in flight\", then the peer's CloseError", res.msgs, res.err)
			}
		})
	}
}

// TestFaultWriteAfterPeerGone: writing to a connection the peer closed
// fails, never hangs and never panics.
func TestFaultWriteAfterPeerGone(t *testing.T) {
	t.Parallel()
	for _, role := range faultRoles {
		for _, how := range []string{"FIN", "RST"} {
			// We do not read, so only the writes can find out.
			t.Run(role+"/TCP "+how, func(t *testing.T) {
				ours, peer := faultPair(t, role)
				if how == "RST" {
					peer.reset()
				} else {
					peer.nc.Close()
				}
				msg := make([]byte, 1024)
				deadline := time.Now().Add(5 * time.Second)
				var err error
				for i := 0; err == nil; i++ {
					if time.Now().After(deadline) {
						t.Fatalf("%d writes to a closed connection succeeded", i)
					}
					err = ours.Write(context.Background(), websocket.MessageBinary, msg)
					if err == nil {
						time.Sleep(time.Millisecond)
					}
				}
				if websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
					t.Errorf("write: %v, want status 1006", err)
				}
				if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("write: %v, want it to wrap EPIPE or ECONNRESET", err)
				}
				// The failure sticks, for writes and reads.
				if err := ours.Write(context.Background(), websocket.MessageBinary, msg); websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
					t.Errorf("second write: %v, want status 1006", err)
				}
				if _, _, err := ours.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
					t.Errorf("read: %v, want status 1006", err)
				}
			})
		}
		t.Run(role+"/after the close handshake", func(t *testing.T) {
			ours, peer := faultPair(t, role)
			peer.send(peer.closeFrame(websocket.StatusGoingAway, ""))
			ctx := context.Background()
			if _, _, err := ours.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
				t.Fatalf("read: %v, want 1001", err)
			}
			if err := ours.Write(ctx, websocket.MessageText, []byte("late")); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Write: %v, want net.ErrClosed", err)
			}
			if w, err := ours.Writer(ctx, websocket.MessageText); err == nil {
				_, err = w.Write([]byte("late"))
				if cerr := w.Close(); err == nil {
					err = cerr
				}
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Writer: %v, want net.ErrClosed", err)
				}
			} else if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Writer: %v, want net.ErrClosed", err)
			}
			if err := ours.Ping(ctx); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Ping: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestFaultPeerGoneLeavesWhatItSent: a peer sends messages, perhaps its
// Close frame, and closes the TCP connection without waiting for our
// answer. A write of ours then fails (the peer's kernel answers it with a
// reset), but what the peer sent is in our socket all the same: a reader
// still gets every message and then the peer's Close (§7.1.5 gives the
// status the peer sent), or status 1006 if it sent none; a Close that
// nobody reads for returns nil if the peer's Close came, and 1006 if not.
func TestFaultPeerGoneLeavesWhatItSent(t *testing.T) {
	t.Parallel()
	type reader struct {
		name  string
		start func(*websocket.Conn) <-chan faultReadResult
	}
	readers := []reader{{"read", faultReader}, {"await", faultAwaitReader}, {"Close", nil}}
	for _, role := range faultRoles {
		for _, closes := range []bool{true, false} {
			for _, r := range readers {
				name := fmt.Sprintf("%s/peer's Close %v/%s", role, closes, r.name)
				t.Run(name, func(t *testing.T) {
					ours, peer := faultPair(t, role)
					out := [][]byte{
						peer.frame(true, websocket.OpText, []byte("one")),
						peer.frame(true, websocket.OpText, []byte("two")),
					}
					if closes {
						out = append(out, peer.closeFrame(websocket.StatusGoingAway, "bye"))
					}
					if err := peer.send(out...); err != nil {
						t.Fatal(err)
					}
					peer.nc.Close()

					// Write until the peer's reset makes a write fail.
					deadline := time.Now().Add(5 * time.Second)
					var err error
					for err == nil {
						if time.Now().After(deadline) {
							t.Fatal("writes to a closed connection kept succeeding")
						}
						time.Sleep(time.Millisecond)
						err = ours.Write(context.Background(), websocket.MessageText, []byte("x"))
					}
					if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
						t.Fatalf("write: %v, want EPIPE or ECONNRESET", err)
					}
					if websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
						t.Errorf("write: %v, want status 1006", err)
					}

					if r.start == nil {
						err := faultAwait(t, faultGo(func() error {
							return ours.Close(websocket.StatusNormalClosure, "")
						}), "Close")
						if closes && err != nil {
							t.Errorf("Close: %v, want nil: the peer's Close came", err)
						}
						if !closes && websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
							t.Errorf("Close: %v, want status 1006", err)
						}
					} else {
						res := faultAwait(t, r.start(ours), "the reader's end")
						if got := strings.Join(res.msgs, ","); got != "one,two" {
							t.Errorf("read %q, want both messages the peer sent", got)
						}
						want := websocket.StatusAbnormalClosure
						if closes {
							want = websocket.StatusGoingAway
						}
						if websocket.CloseStatus(res.err) != want {
							t.Errorf("read: %v, want status %v", res.err, want)
						}
					}
					// The connection is over: writes keep failing
					// as the first did, and Close fails at once.
					start := time.Now()
					if err := ours.Write(context.Background(), websocket.MessageText, []byte("late")); websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
						t.Errorf("write at the end: %v, want status 1006", err)
					}
					if err := ours.Close(websocket.StatusNormalClosure, ""); err == nil {
						t.Error("Close at the end succeeded")
					}
					if d := time.Since(start); d > time.Second {
						t.Errorf("writing to and closing the ended connection took %v", d)
					}
				})
			}
		}
	}
}

// TestFaultPongs: unsolicited, duplicate, stale and malformed pongs are
// ignored (§5.5.3); they neither satisfy a Ping they do not answer nor
// reach the reader as data, whether a Read loop or AwaitMessage reads.
func TestFaultPongs(t *testing.T) {
	t.Parallel()
	for _, role := range faultRoles {
		for _, await := range []bool{false, true} {
			name := role
			if await {
				name += "/await" // pongs handled with nobody reading
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ours, peer := faultPair(t, role)
				var pongs atomic.Int32
				ours.OnPong(func([]byte) { pongs.Add(1) })
				msgs, readErr := faultMessages(ours, await)
				expect := func(want string) {
					t.Helper()
					if got := faultAwait(t, msgs, "message "+want); got != want {
						t.Fatalf("read %q, want %q", got, want)
					}
				}
				// Pongs nobody asked for, one of them shaped like the
				// answer to our first ping.
				first := binary.BigEndian.AppendUint64(nil, 1)
				peer.send(
					peer.frame(true, websocket.OpPong, []byte("unsolicited")),
					peer.frame(true, websocket.OpPong, first),
					peer.frame(true, websocket.OpPong, nil),
					peer.frame(true, websocket.OpText, []byte("marker")),
				)
				expect("marker")

				// A ping answered twice.
				ctx, cancel := context.WithTimeout(context.Background(), faultWait)
				defer cancel()
				pinged := faultGo(func() error { return ours.Ping(ctx) })
				h, payload, err := peer.readFrame()
				if err != nil || h.Opcode != websocket.OpPing {
					t.Fatalf("peer read %v, %v; want a ping", h.Opcode, err)
				}
				peer.send(
					peer.frame(true, websocket.OpPong, payload),
					peer.frame(true, websocket.OpPong, payload),
					peer.frame(true, websocket.OpText, []byte("after pongs")),
				)
				if err := faultAwait(t, pinged, "Ping"); err != nil {
					t.Fatalf("Ping: %v", err)
				}
				expect("after pongs")

				// A ping answered only with wrong pongs times out, and the
				// connection stays usable.
				short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer cancelShort()
				pinged = faultGo(func() error { return ours.Ping(short) })
				h, payload, err = peer.readFrame()
				if err != nil || h.Opcode != websocket.OpPing {
					t.Fatalf("peer read %v, %v; want a ping", h.Opcode, err)
				}
				wrong := bytes.Clone(payload)
				wrong[7] ^= 0xff
				peer.send(
					peer.frame(true, websocket.OpPong, wrong),
					peer.frame(true, websocket.OpPong, payload[:4]),
					peer.frame(true, websocket.OpPong, first), // stale: answered already
				)
				if err := faultAwait(t, pinged, "Ping"); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Ping answered only by wrong pongs: %v, want context.DeadlineExceeded", err)
				}
				peer.send(peer.frame(true, websocket.OpText, []byte("still usable")))
				expect("still usable")
				if n := pongs.Load(); n != 8 {
					t.Errorf("OnPong saw %d pongs, want all 8", n)
				}

				peer.send(peer.closeFrame(websocket.StatusNormalClosure, ""))
				if err := faultAwait(t, readErr, "read error"); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
					t.Fatalf("read: %v, want 1000", err)
				}
				if len(msgs) != 0 {
					t.Fatalf("a pong was delivered as data: %q", <-msgs)
				}
			})
		}
	}
}

// faultMessages reads c until a read fails, with a Read loop or, if await,
// with AwaitMessage, delivering each message as it is read and then the
// error.
func faultMessages(c *websocket.Conn, await bool) (<-chan string, <-chan error) {
	msgs := make(chan string, 10)
	end := make(chan error, 1)
	read := func() bool {
		_, msg, err := c.Read(context.Background())
		if err != nil {
			end <- err
			return false
		}
		msgs <- string(msg)
		return true
	}
	if !await {
		go func() {
			for read() {
			}
		}()
		return msgs, end
	}
	var serve func()
	serve = func() {
		if read() {
			c.AwaitMessage(serve)
		}
	}
	c.AwaitMessage(serve)
	return msgs, end
}

// faultRealPair connects our client to our server. Both are closed when
// the test ends.
func faultRealPair(t *testing.T, url string, conns <-chan *websocket.Conn) (client, server *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultWait)
	defer cancel()
	client, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	server = faultAwait(t, conns, "accepted connection")
	t.Cleanup(func() {
		client.CloseNow()
		server.CloseNow()
	})
	return client, server
}

// TestFaultConcurrentClose: Close called from several goroutines at once
// performs one closing handshake; one call reports its success, the others
// say the connection is closed. Close and CloseNow racing never hang. With
// both sides awaiting messages, the await path and Close race to read the
// peer's answer; the awaiting functions are told how the connection ended.
func TestFaultConcurrentClose(t *testing.T) {
	url, conns := faultAcceptServer(t, nil)
	for _, role := range faultRoles {
		for _, reader := range faultReaders {
			await := reader.name == "await"
			t.Run(faultName(role+"/Close×8", reader.name), func(t *testing.T) {
				closer, read, closerRead := faultClosePair(t, url, conns, role, reader.start, await)
				start := make(chan struct{})
				errs := make(chan error, 8)
				for i := 0; i < 8; i++ {
					go func() {
						<-start
						errs <- closer.Close(websocket.StatusNormalClosure, "")
					}()
				}
				close(start)
				nils := 0
				for i := 0; i < 8; i++ {
					err := faultAwait(t, errs, "Close")
					t.Logf("Close: %v", err)
					switch {
					case err == nil:
						nils++
					case !errors.Is(err, net.ErrClosed):
						t.Errorf("concurrent Close: %v, want nil or net.ErrClosed", err)
					}
				}
				if nils != 1 {
					t.Errorf("%d of 8 concurrent Close calls returned nil, want exactly 1 (the one that did the handshake)", nils)
				}
				res := faultAwait(t, read, "peer's read error")
				if websocket.CloseStatus(res.err) != websocket.StatusNormalClosure {
					t.Errorf("peer read: %v, want 1000", res.err)
				}
				if closerRead != nil {
					res := faultAwait(t, closerRead, "closing side's awaiting function")
					if websocket.CloseStatus(res.err) != websocket.StatusNormalClosure {
						t.Errorf("closing side's awaiting function read %v, want the peer's answer, 1000", res.err)
					}
				}
				if err := closer.Close(websocket.StatusNormalClosure, ""); !errors.Is(err, net.ErrClosed) {
					t.Errorf("Close after Close: %v, want net.ErrClosed", err)
				}
			})
			t.Run(faultName(role+"/Close and CloseNow", reader.name), func(t *testing.T) {
				for i := 0; i < 20; i++ {
					closer, read, closerRead := faultClosePair(t, url, conns, role, reader.start, await)
					closed := faultGo(func() error { return closer.Close(websocket.StatusNormalClosure, "") })
					time.Sleep(time.Duration(rand.Intn(200)) * time.Microsecond)
					closer.CloseNow()
					err := faultAwait(t, closed, "Close")
					if err != nil && !errors.Is(err, net.ErrClosed) {
						t.Errorf("Close cut short by CloseNow: %v, want nil or net.ErrClosed", err)
					}
					res := faultAwait(t, read, "peer's read error")
					if s := websocket.CloseStatus(res.err); s != websocket.StatusNormalClosure && s != websocket.StatusAbnormalClosure {
						t.Errorf("peer read: %v, want 1000 or 1006", res.err)
					}
					if closerRead != nil {
						res := faultAwait(t, closerRead, "closing side's awaiting function")
						if s := websocket.CloseStatus(res.err); s != websocket.StatusNormalClosure && !errors.Is(res.err, net.ErrClosed) {
							t.Errorf("closing side's awaiting function read %v, want 1000 or net.ErrClosed", res.err)
						}
					}
				}
			})
		}
	}
}

// faultClosePair connects a pair for the concurrent-close cases: closer is
// the side in role, which will close; the other side reads with start, and
// read reports how its reading ended. With await, the closer awaits
// messages too, and closerRead reports what its function's read got.
func faultClosePair(t *testing.T, url string, conns <-chan *websocket.Conn, role string,
	start func(*websocket.Conn) <-chan faultReadResult, await bool) (closer *websocket.Conn, read, closerRead <-chan faultReadResult) {
	client, server := faultRealPair(t, url, conns)
	closer, other := server, client
	if role == "client" {
		closer, other = client, server
	}
	read = start(other)
	if await {
		closerRead = faultAwaitReader(closer)
	}
	return closer, read, closerRead
}

// TestFaultCloseNowUnblocks: CloseNow ends a Read waiting for data (or
// calls a function awaiting a message, whose read says the same), a Write
// blocked on a peer that does not read, a streamed write, a writer waiting
// for its turn and a Ping waiting for its pong, at once.
func TestFaultCloseNowUnblocks(t *testing.T) {
	t.Parallel()
	for _, role := range faultRoles {
		for _, reader := range faultReaders {
			t.Run(faultName(role+"/read", reader.name), func(t *testing.T) {
				ours, _ := faultPair(t, role)
				read := reader.start(ours)
				time.Sleep(50 * time.Millisecond)
				ours.CloseNow()
				res := faultAwait(t, read, "read error")
				if !errors.Is(res.err, net.ErrClosed) || websocket.CloseStatus(res.err) != websocket.StatusAbnormalClosure {
					t.Fatalf("read: %v, want 1006 wrapping net.ErrClosed", res.err)
				}
			})
		}
		for _, streamed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/write/streamed=%v", role, streamed), func(t *testing.T) {
				ours, _ := faultPair(t, role) // the peer never reads
				ctx := context.Background()
				big := make([]byte, 1<<20)
				var progress atomic.Int64
				blocked := faultGo(func() error {
					for {
						var err error
						if streamed {
							var w io.WriteCloser
							w, err = ours.Writer(ctx, websocket.MessageBinary)
							if err == nil {
								for i := 0; i < 4 && err == nil; i++ {
									_, err = w.Write(big)
									progress.Add(1)
								}
								if cerr := w.Close(); err == nil {
									err = cerr
								}
							}
						} else {
							err = ours.Write(ctx, websocket.MessageBinary, big)
						}
						if err != nil {
							return err
						}
						progress.Add(1)
					}
				})
				// Wait for the socket buffers to fill.
				for last, deadline := int64(-1), time.Now().Add(5*time.Second); ; {
					time.Sleep(100 * time.Millisecond)
					n := progress.Load()
					if n == last {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("writes to a peer that does not read never blocked")
					}
					last = n
				}
				waiting := faultGo(func() error { return ours.Write(ctx, websocket.MessageText, []byte("queued")) })
				pinged := faultGo(func() error { return ours.Ping(ctx) })
				time.Sleep(50 * time.Millisecond)
				start := time.Now()
				ours.CloseNow()
				err := faultAwait(t, blocked, "blocked write")
				if !errors.Is(err, net.ErrClosed) || websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
					t.Errorf("blocked write: %v, want 1006 wrapping net.ErrClosed", err)
				}
				if err := faultAwait(t, waiting, "waiting write"); !errors.Is(err, net.ErrClosed) {
					t.Errorf("write waiting for its turn: %v, want net.ErrClosed", err)
				}
				if err := faultAwait(t, pinged, "Ping"); !errors.Is(err, net.ErrClosed) {
					t.Errorf("Ping: %v, want net.ErrClosed", err)
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("CloseNow took %v to unblock the writers", d)
				}
			})
		}
	}
}

// TestFaultCancelRacesClose races context cancellation of reads, writes,
// streamed writes and pings against Close from another goroutine, many
// times. Whatever wins, every call returns, the errors are the documented
// ones, and the peer (an echo server reading with a Read loop, or with
// AwaitMessage) sees a clean close or an abnormal one, never a corrupted
// stream.
func TestFaultCancelRacesClose(t *testing.T) {
	serverErrs := make(chan error, 1)
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		// The server echoes with a Read loop, or on every other
		// iteration with AwaitMessage.
		echo := func() bool {
			typ, msg, err := c.Read(context.Background())
			if err == nil {
				err = c.Write(context.Background(), typ, msg)
			}
			if err != nil {
				c.CloseNow()
				serverErrs <- err
				return false
			}
			return true
		}
		if r.URL.Query().Get("await") == "1" {
			var serve func()
			serve = func() {
				if echo() {
					c.AwaitMessage(serve)
				}
			}
			c.AwaitMessage(serve)
			return
		}
		for echo() {
		}
	})
	iterations := 100
	if testing.Short() {
		iterations = 20
	}
	// allowed reports whether err is one a call cut short by its context
	// or by Close may return.
	allowed := func(err error) bool {
		return err == nil || errors.Is(err, context.Canceled) || errors.Is(err, net.ErrClosed) ||
			websocket.CloseStatus(err) == websocket.StatusNormalClosure || websocket.CloseStatus(err) == websocket.StatusAbnormalClosure
	}
	for i := 0; i < iterations; i++ {
		dctx, dcancel := context.WithTimeout(context.Background(), faultWait)
		c, _, err := websocket.Dial(dctx, url+"?await="+fmt.Sprint(i%2), nil)
		dcancel()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		run := func(f func() error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- f()
			}()
		}
		// The reader keeps reading after its context ends, as the
		// package documentation asks.
		run(func() error {
			rctx := ctx
			for {
				_, _, err := c.Read(rctx)
				if err != nil && rctx == ctx && errors.Is(err, context.Canceled) {
					rctx = context.Background()
					continue
				}
				if err != nil {
					return err
				}
			}
		})
		run(func() error {
			for {
				if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 100+rand.Intn(40000))); err != nil {
					return err
				}
			}
		})
		run(func() error {
			for {
				w, err := c.Writer(ctx, websocket.MessageText)
				if err != nil {
					return err
				}
				for j := 0; j < 3 && err == nil; j++ {
					_, err = w.Write(bytes.Repeat([]byte("x"), 10000))
				}
				if cerr := w.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return err
				}
			}
		})
		run(func() error {
			for {
				if err := c.Ping(ctx); err != nil {
					return err
				}
			}
		})
		closed := make(chan error, 1)
		time.AfterFunc(time.Duration(rand.Intn(2000))*time.Microsecond, cancel)
		time.AfterFunc(time.Duration(rand.Intn(2000))*time.Microsecond, func() {
			closed <- c.Close(websocket.StatusNormalClosure, "")
		})
		start := time.Now()
		closeErr := faultAwait(t, closed, "Close")
		if d := time.Since(start); d > 7*time.Second {
			t.Fatalf("iteration %d: Close took %v", i, d)
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		faultAwait(t, done, "readers, writers and pingers to return")
		close(errs)
		for err := range errs {
			if !allowed(err) {
				t.Errorf("iteration %d: a call returned %v", i, err)
			}
		}
		serverErr := faultAwait(t, serverErrs, "server's read error")
		switch s := websocket.CloseStatus(serverErr); {
		case s == websocket.StatusNormalClosure:
		case s == websocket.StatusAbnormalClosure && closeErr != nil:
			// A write cut short mid-frame closed the connection.
		default:
			t.Fatalf("iteration %d: Close returned %v; the server saw %v", i, closeErr, serverErr)
		}
		cancel()
		c.CloseNow()
	}
}

// TestFaultCloseAfterReaderLeaves: Close finds a goroutine reading, so it
// waits for that goroutine to see the peer's answer; but the reader's
// context ends and it returns before the answer comes. Close should notice
// that nobody reads any more and read the answer itself, instead of
// waiting out its five seconds and reporting that the peer did not answer.
// This is the common shutdown sequence: cancel the context the read loop
// runs under, then Close.
func TestFaultCloseAfterReaderLeaves(t *testing.T) {
	for _, role := range faultRoles {
		t.Run(role, func(t *testing.T) {
			ours, peer := faultPair(t, role)
			ctx, cancel := context.WithCancel(context.Background())
			read := faultGo(func() error {
				_, _, err := ours.Read(ctx)
				return err
			})
			// Make sure the reader is inside Read, holding the read
			// lock: if Close got it first, it would read the answer
			// itself and the test would pass without testing anything.
			// Only a goroutine in Read answers a ping.
			peer.send(peer.frame(true, websocket.OpPing, []byte("probe")))
			if h, p, err := peer.readFrame(); err != nil || h.Opcode != websocket.OpPong || string(p) != "probe" {
				t.Fatalf("peer read %v %q, %v; want the pong", h.Opcode, p, err)
			}
			start := time.Now()
			closed := faultGo(func() error { return ours.Close(websocket.StatusNormalClosure, "") })
			h, _, err := peer.readFrame()
			if err != nil || h.Opcode != websocket.OpClose {
				t.Fatalf("peer read %v, %v; want our Close frame", h.Opcode, err)
			}
			cancel() // the application's read loop ends
			if err := faultAwait(t, read, "read error"); !errors.Is(err, context.Canceled) {
				t.Fatalf("read: %v, want context.Canceled", err)
			}
			time.Sleep(50 * time.Millisecond) // the peer is slow to answer
			peer.send(peer.closeFrame(websocket.StatusNormalClosure, ""))
			err = faultAwait(t, closed, "Close")
			if d := time.Since(start); err != nil || d > 2*time.Second {
				t.Errorf("Close returned %v after %v; want nil within the peer's answer time", err, d)
			}
		})
	}
}

// faultStream checks the sequence of data frames a peer receives (§5.4):
// continuations only inside a message, a new message only after the last
// one ended. It returns the messages completed so far.
type faultStream struct {
	in   bool
	cur  []byte
	done []string
}

func (s *faultStream) add(f faultFrame, fin bool) error {
	switch f.op {
	case websocket.OpContinuation:
		if !s.in {
			return errors.New("continuation frame with no message to continue")
		}
	case websocket.OpText, websocket.OpBinary:
		if s.in {
			return fmt.Errorf("%v frame inside an unfinished message", f.op)
		}
		s.in, s.cur = true, nil
	default:
		return nil
	}
	s.cur = append(s.cur, f.payload...)
	if fin {
		s.in = false
		s.done = append(s.done, string(s.cur))
	}
	return nil
}

// TestFaultWriterCutShort: a frame of a streamed message that a deadline
// (or a context) stops before any byte reaches the wire leaves the stream
// intact, so the connection stays usable; but the message cannot be
// finished as if nothing happened. Before the first frame, the message must
// be dropped; after some fragments went out, the connection must fail,
// since the peer would otherwise get a message with a hole in it. Either
// way the peer never sees a malformed sequence or a corrupted message.
func TestFaultWriterCutShort(t *testing.T) {
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 2<<10) // 32 KiB: its own frame
	for _, role := range faultRoles {
		for _, sent := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/after %d fragments", role, sent), func(t *testing.T) {
				ours, peer := faultPair(t, role)
				ctx := context.Background()
				w, err := ours.Writer(ctx, websocket.MessageText)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < sent; i++ {
					if _, err := w.Write(chunk); err != nil {
						t.Fatal(err)
					}
				}
				ours.SetWriteDeadline(time.Now().Add(-time.Second))
				if _, err := w.Write(chunk); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("write past the deadline: %v", err)
				}
				ours.SetWriteDeadline(time.Time{})
				w.Close() // as the documentation asks, whatever happened
				nextErr := ours.Write(ctx, websocket.MessageText, []byte("next"))
				ours.CloseNow()
				var s faultStream
				for {
					h, payload, err := peer.readFrame()
					if err != nil {
						break
					}
					if err := s.add(faultFrame{h.Opcode, payload}, h.Fin); err != nil {
						t.Fatalf("the peer got a malformed stream: %v", err)
					}
				}
				for _, m := range s.done {
					if m != "next" {
						t.Errorf("the peer got a message of %d bytes from the cut-short writer", len(m))
					}
				}
				if sent == 0 && (nextErr != nil || len(s.done) != 1) {
					t.Errorf("after a message dropped before its first frame: write %v, peer got %d messages; want the connection usable", nextErr, len(s.done))
				}
			})
		}
	}
}

// TestFaultCompressedWriteCutShort: with context takeover, a compressed
// message that never reached the wire is still in the compressor's window,
// so the next message may refer back to bytes the peer never got. Either
// the write must leave the compressor as it was, or the connection must
// fail; the peer must never read a corrupted message.
func TestFaultCompressedWriteCutShort(t *testing.T) {
	comp := &websocket.CompressionOptions{ContextTakeover: true}
	url, conns := faultAcceptServer(t, &websocket.AcceptOptions{Compression: comp})
	ctx, cancel := context.WithTimeout(context.Background(), faultWait)
	defer cancel()
	client, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Compression: comp})
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseNow()
	server := faultAwait(t, conns, "accepted connection")
	defer server.CloseNow()
	msg := []byte(strings.Repeat("a message that compresses well; ", 100))
	client.SetWriteDeadline(time.Now().Add(-time.Second))
	if err := client.Write(ctx, websocket.MessageText, msg); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past the deadline: %v", err)
	}
	client.SetWriteDeadline(time.Time{})
	if err := client.Write(ctx, websocket.MessageText, msg); err != nil {
		// Failing the connection is a correct answer too.
		if websocket.CloseStatus(err) == -1 && !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second write: %v", err)
		}
		return
	}
	_, got, err := server.Read(ctx)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("server read %d bytes (%q…), %v; want the message intact", len(got), got[:min(len(got), 20)], err)
	}
}

// closeWithMessageInFlight has ours Close, and the peer answer with a
// message, its Close frame and a message after it, all at once.
func closeWithMessageInFlight(t *testing.T, ours *websocket.Conn, peer *faultPeer) {
	t.Helper()
	closed := faultGo(func() error { return ours.Close(websocket.StatusNormalClosure, "") })
	h, _, err := peer.readFrame()
	if err != nil || h.Opcode != websocket.OpClose {
		t.Fatalf("peer read %v, %v; want our Close frame", h.Opcode, err)
	}
	peer.send(
		peer.frame(true, websocket.OpText, []byte("in flight")),
		peer.closeFrame(websocket.StatusNormalClosure, ""),
		peer.frame(true, websocket.OpText, []byte("after")),
	)
	if err := faultAwait(t, closed, "Close"); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// A read under a context that has already ended reads nothing, not even a
// frame that is already buffered: a Ping or Close read then could not be
// answered, and §5.5.2 and §5.5.1 say they must be. The next read under a
// live context answers them.
func TestFaultDoneContextLeavesFramesUnread(t *testing.T) {
	t.Parallel()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, role := range faultRoles {
		t.Run(role, func(t *testing.T) {
			ours, peer := faultPair(t, role)
			// One write: by the time "hi" is read, the rest is
			// likely buffered behind it.
			peer.send(peer.frame(true, websocket.OpText, []byte("hi")),
				peer.frame(true, websocket.OpPing, []byte("p")),
				peer.frame(true, websocket.OpText, []byte("after")),
				peer.closeFrame(websocket.StatusNormalClosure, ""))
			ctx := context.Background()
			if _, msg, err := ours.Read(ctx); err != nil || string(msg) != "hi" {
				t.Fatalf("first read: %q, %v", msg, err)
			}
			if _, msg, err := ours.Read(done); !errors.Is(err, context.Canceled) {
				t.Fatalf("read under an ended context: %q, %v; want context.Canceled", msg, err)
			}
			if _, msg, err := ours.Read(ctx); err != nil || string(msg) != "after" {
				t.Fatalf("read after: %q, %v", msg, err)
			}
			if _, _, err := ours.Read(done); !errors.Is(err, context.Canceled) {
				t.Fatalf("read under an ended context: %v; want context.Canceled", err)
			}
			if _, _, err := ours.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("last read: %v, want the peer's Close", err)
			}
			frames, err := peer.drain(faultWait)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) != 2 || frames[0].op != websocket.OpPong || string(frames[0].payload) != "p" ||
				frames[1].closeCode() != websocket.StatusNormalClosure {
				t.Fatalf("peer got %v; want the Pong for its Ping, then the echo of its Close", frames)
			}
		})
	}
}

// After our Close and before the peer's, a Ping still gets its Pong
// (§5.5.2: "unless it already received a Close frame"); only data frames
// end with our Close (§5.5.1).
func TestFaultPongAfterOurClose(t *testing.T) {
	t.Parallel()
	for _, role := range faultRoles {
		for _, reading := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reader=%v", role, reading), func(t *testing.T) {
				ours, peer := faultPair(t, role)
				var read <-chan faultReadResult
				if reading {
					read = faultReader(ours)
				}
				closed := faultGo(func() error { return ours.Close(websocket.StatusNormalClosure, "") })
				if h, _, err := peer.readFrame(); err != nil || h.Opcode != websocket.OpClose {
					t.Fatalf("peer read %v, %v; want our Close frame", h.Opcode, err)
				}
				peer.send(peer.frame(true, websocket.OpPing, []byte("still there?")))
				_ = peer.nc.SetReadDeadline(time.Now().Add(faultWait))
				h, p, err := peer.readFrame()
				if err != nil || h.Opcode != websocket.OpPong || string(p) != "still there?" {
					t.Fatalf("peer read %v %q, %v; want the Pong for its Ping", h.Opcode, p, err)
				}
				peer.send(peer.closeFrame(websocket.StatusNormalClosure, ""))
				peer.nc.Close() // as a server does, for a client that waits for it
				if err := faultAwait(t, closed, "Close"); err != nil {
					t.Fatalf("Close: %v", err)
				}
				if read != nil {
					faultAwait(t, read, "read error")
				}
			})
		}
	}
}

// A Ping read while another writer holds the connection (a large message to
// a slow peer) gets its Pong even when the read's context ends first: the
// Pong is owed, and the next read sends it before anything else (§5.5.2);
// with AwaitMessage, the wait for the next message does.
func TestFaultPongOwedPastReadDeadline(t *testing.T) {
	t.Parallel()
	for _, role := range faultRoles {
		for _, reader := range faultReaders {
			t.Run(faultName(role, reader.name), func(t *testing.T) {
				ours, peer := faultPair(t, role)
				// More than the socket buffers hold: the write waits
				// for the peer to read.
				large := make([]byte, 4<<20)
				written := faultGo(func() error { return ours.Write(context.Background(), websocket.MessageBinary, large) })
				_ = peer.nc.SetReadDeadline(time.Now().Add(faultWait))
				if _, err := peer.br.Peek(1); err != nil { // the writer is under way
					t.Fatal(err)
				}
				peer.send(peer.frame(true, websocket.OpPing, []byte("are you there")))
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				if _, _, err := ours.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("read: %v, want its deadline", err)
				}

				h, p, err := peer.readFrame() // the large message, which frees the writer
				if err != nil || h.Opcode != websocket.OpBinary || len(p) != len(large) {
					t.Fatalf("peer read %v of %d bytes, %v; want the large message", h.Opcode, len(p), err)
				}
				if err := faultAwait(t, written, "large write"); err != nil {
					t.Fatal(err)
				}
				ours.SetReadDeadline(time.Time{}) // clears what the ended read left on the socket
				read := reader.start(ours)
				h, p, err = peer.readFrame()
				if err != nil || h.Opcode != websocket.OpPong || string(p) != "are you there" {
					t.Fatalf("peer read %v %q, %v; want the Pong it is owed", h.Opcode, p, err)
				}
				peer.send(peer.closeFrame(websocket.StatusNormalClosure, ""))
				peer.nc.Close()
				faultAwait(t, read, "read error")
			})
		}
	}
}

// pastDeadline is a context whose deadline has passed but which does not
// report itself done yet, as a context.WithDeadline is until its timer
// fires (later the busier the machine is).
type pastDeadline struct{ context.Context }

func (pastDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// A Ping or Close read under such a context is still answered: the Pong is
// owed and sent by the next read, the Close echoed all the same.
func TestFaultRepliesPastADeadline(t *testing.T) {
	t.Parallel()
	for _, role := range faultRoles {
		for _, op := range []websocket.Opcode{websocket.OpPing, websocket.OpClose} {
			t.Run(fmt.Sprintf("%s/%v", role, op), func(t *testing.T) {
				ours, peer := faultPair(t, role)
				control := peer.frame(true, websocket.OpPing, []byte("p"))
				if op == websocket.OpClose {
					control = peer.closeFrame(websocket.StatusGoingAway, "")
				}
				peer.send(peer.frame(true, websocket.OpText, []byte("hi")), control)
				if _, msg, err := ours.Read(context.Background()); err != nil || string(msg) != "hi" {
					t.Fatalf("first read: %q, %v", msg, err)
				}
				ours.Read(pastDeadline{context.Background()}) // whatever it finds, it answers
				var read <-chan faultReadResult
				if op == websocket.OpPing {
					read = faultReader(ours)
				}
				_ = peer.nc.SetReadDeadline(time.Now().Add(faultWait))
				h, p, err := peer.readFrame()
				if op == websocket.OpPing && (err != nil || h.Opcode != websocket.OpPong || string(p) != "p") {
					t.Fatalf("peer read %v %q, %v; want the Pong", h.Opcode, p, err)
				}
				if op == websocket.OpClose && (err != nil || h.Opcode != websocket.OpClose) {
					t.Fatalf("peer read %v %q, %v; want the echo of its Close", h.Opcode, p, err)
				}
				if read != nil {
					peer.send(peer.closeFrame(websocket.StatusNormalClosure, ""))
					peer.nc.Close()
					faultAwait(t, read, "read error")
				}
			})
		}
	}
}
