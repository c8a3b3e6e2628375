package websocket

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// Write coalescing (coalesce.go): answers written while more input is
// buffered are sent together, and never later than the reader's next wait,
// holdDelay, a Close or an abrupt close.

// countingConn counts the writes that go through net.Conn.Write. The
// Conn's writes without blocking go to the socket directly and are not
// counted.
type countingConn struct {
	*net.TCPConn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.TCPConn.Write(p)
}

// heldPeer is the raw other end of a Conn under test.
type heldPeer struct {
	nc     net.Conn
	br     *bufio.Reader
	client bool // masks what it sends
}

// heldPair connects a Conn in the given role, over a countingConn, to a raw
// peer, which sends messages(n) in one write.
func heldPair(t *testing.T, server bool, n int) (*Conn, *countingConn, *heldPeer) {
	t.Helper()
	a, b := tcpPair(t)
	cc := &countingConn{TCPConn: a.(*net.TCPConn)}
	c := newConn(cc, server, nil, "", extensions{})
	// A wrapper gets no raw socket of its own (it might change the
	// bytes); this one only counts, so give the Conn the socket's.
	raw, err := cc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	c.in.raw, c.in.owner = raw, c
	peer := &heldPeer{nc: b, br: bufio.NewReader(b), client: server}
	t.Cleanup(func() {
		c.CloseNow()
		b.Close()
	})
	if _, err := b.Write(peer.messages(n)); err != nil {
		t.Fatal(err)
	}
	return c, cc, peer
}

// messages returns n frames of distinct text messages in one slice, as a
// peer pipelining requests sends them.
func (p *heldPeer) messages(n int) []byte {
	var b []byte
	for i := range n {
		h := Header{Fin: true, Opcode: OpText, Masked: p.client, MaskKey: [4]byte{1, 2, 3, 4}}
		payload := []byte(fmt.Sprintf("message %03d", i))
		h.Length = int64(len(payload))
		b = AppendHeader(b, h)
		if p.client {
			Mask(payload, h.MaskKey)
		}
		b = append(b, payload...)
	}
	return b
}

// expect reads n frames and checks they are the echoes of messages(n), in
// order, and that nothing else came first.
func (p *heldPeer) expect(t *testing.T, n int) {
	t.Helper()
	_ = p.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		h, err := ReadHeader(p.br)
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(p.br, payload); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if h.Masked != !p.client {
			t.Fatalf("echo %d: masked = %v from a %s", i, h.Masked, map[bool]string{true: "server", false: "client"}[p.client])
		}
		if h.Masked {
			Mask(payload, h.MaskKey)
		}
		if want := fmt.Sprintf("message %03d", i); h.Opcode != OpText || !h.Fin || string(payload) != want {
			t.Fatalf("echo %d: %v fin=%v %q, want %q", i, h.Opcode, h.Fin, payload, want)
		}
	}
}

// echo echoes n messages.
func echo(ctx context.Context, c *Conn, n int) error {
	for range n {
		typ, p, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, typ, p); err != nil {
			return err
		}
	}
	return nil
}

func TestHeldWritesCoalesce(t *testing.T) {
	for _, server := range []bool{true, false} {
		t.Run(map[bool]string{true: "server", false: "client"}[server], func(t *testing.T) {
			const n = 32
			c, cc, peer := heldPair(t, server, n)
			ctx := context.Background()
			done := make(chan error, 1)
			go func() {
				err := echo(ctx, c, n)
				if err == nil {
					// Waits for more: the answers go out now.
					_, _, err = c.Read(ctx)
				}
				done <- err
			}()
			peer.expect(t, n)
			// The 32 messages arrive in one segment and are read with
			// one system call; each answer on its own would take a
			// write of its own. On a slow machine the timer may fire
			// mid-batch, and each time costs up to two writes.
			if w := cc.writes.Load(); w > n/2 {
				t.Errorf("%d answers took %d writes; want them sent together", n, w)
			}
			c.CloseNow()
			if err := <-done; !errors.Is(err, net.ErrClosed) {
				t.Errorf("reader ended with %v", err)
			}
		})
	}
}

// An application that writes an answer and then does not read for a while
// still has its answer sent within holdDelay.
func TestHeldWriteSentWhileApplicationIsBusy(t *testing.T) {
	c, _, peer := heldPair(t, true, 2)
	ctx := context.Background()
	if err := echo(ctx, c, 1); err != nil {
		t.Fatal(err)
	}
	if !c.batching.Load() {
		t.Fatal("second message not buffered; the test does not test holding")
	}
	// Not reading: the second message waits in our buffer.
	start := time.Now()
	peer.expect(t, 1)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answer came after %v", d)
	}
	if err := echo(ctx, c, 1); err != nil {
		t.Fatal(err)
	}
}

// Held answers go out before the Close frame, and before the TCP
// connection closes on CloseNow.
func TestHeldWritesSentBeforeClose(t *testing.T) {
	for _, now := range []bool{false, true} {
		t.Run(map[bool]string{false: "Close", true: "CloseNow"}[now], func(t *testing.T) {
			const n = 10
			c, _, peer := heldPair(t, true, n)
			ctx := context.Background()
			if err := echo(ctx, c, n); err != nil {
				t.Fatal(err)
			}
			closed := make(chan error, 1)
			if now {
				closed <- c.CloseNow()
			} else {
				go func() { closed <- c.Close(StatusNormalClosure, "bye") }()
			}
			peer.expect(t, n)
			h, err := ReadHeader(peer.br)
			switch {
			case now && !errors.Is(err, io.EOF):
				t.Errorf("after the answers: %v, %v; want EOF", h, err)
			case !now && (err != nil || h.Opcode != OpClose):
				t.Errorf("after the answers: %v, %v; want a Close frame", h, err)
			}
			if !now {
				// Answer the Close as a peer does.
				io.CopyN(io.Discard, peer.br, h.Length)
				peer.nc.Write(append(AppendHeader(nil, Header{Fin: true, Opcode: OpClose, Masked: true, Length: 2}), 0x03, 0xe8))
			}
			if err := <-closed; err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
}

// A write that could be held still fails when its context or the write
// deadline has passed, as a write to the socket would.
func TestHeldWriteHonoursDeadlines(t *testing.T) {
	c, _, peer := heldPair(t, true, 3)
	ctx := context.Background()
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if !c.batching.Load() {
		t.Fatal("more messages not buffered; the test does not test holding")
	}
	c.SetWriteDeadline(aLongTimeAgo)
	if err := c.Write(ctx, MessageText, []byte("late")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write past the deadline: %v", err)
	}
	c.SetWriteDeadline(time.Time{})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Write(cancelled, MessageText, []byte("cancelled")); !errors.Is(err, context.Canceled) {
		t.Errorf("write with a cancelled context: %v", err)
	}
	if err := c.Write(ctx, MessageText, []byte("message 000")); err != nil {
		t.Fatal(err)
	}
	peer.expect(t, 1)
}

// The reader never blocks on sending held frames: a peer that sends a lot
// before it reads anything must not deadlock with a server that reads in
// one goroutine and writes in another.
func TestHeldWritesDoNotStallTheReader(t *testing.T) {
	server, client := pipePair(t, extensions{}, extensions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n, size = 16 << 10, 1 << 10 // 16 MiB each way, more than socket buffers hold
	msg := bytes.Repeat([]byte{'x'}, size)
	serverRead := make(chan error, 1)
	go func() { // reads all the client sends
		for range n {
			if _, _, err := server.Read(ctx); err != nil {
				serverRead <- err
				return
			}
		}
		serverRead <- nil
	}()
	serverWrote := make(chan error, 1)
	go func() { // meanwhile writes as much back
		for range n {
			if err := server.Write(ctx, MessageBinary, msg); err != nil {
				serverWrote <- err
				return
			}
		}
		serverWrote <- nil
	}()
	// The client writes everything before it reads anything.
	for i := range n {
		if err := client.Write(ctx, MessageBinary, msg); err != nil {
			t.Fatalf("client write %d: %v", i, err)
		}
	}
	for i := range n {
		if _, _, err := client.Read(ctx); err != nil {
			t.Fatalf("client read %d: %v", i, err)
		}
	}
	if err := <-serverRead; err != nil {
		t.Fatal(err)
	}
	if err := <-serverWrote; err != nil {
		t.Fatal(err)
	}
}

// xorConn scrambles every byte it reads and writes, as a wrapper that
// changes the stream would (a PROXY-protocol reader, say).
type xorConn struct{ *net.TCPConn }

func (c xorConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	for i := range p[:n] {
		p[i] ^= 0x55
	}
	return n, err
}

func (c xorConn) Write(p []byte) (int, error) {
	q := bytes.Clone(p)
	for i := range q {
		q[i] ^= 0x55
	}
	return c.TCPConn.Write(q)
}

// A wrapper around a socket is read and written through its own methods,
// never around them through the socket it exposes with SyscallConn.
func TestWrappedSocketIsNotBypassed(t *testing.T) {
	a, b := tcpPair(t)
	server := newConn(xorConn{a.(*net.TCPConn)}, true, nil, "", extensions{})
	client := newConn(xorConn{b.(*net.TCPConn)}, false, nil, "", extensions{})
	defer server.CloseNow()
	defer client.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 20
	go echo(ctx, server, n)
	for i := range n { // pipelined, so that answers could be held
		if err := client.Write(ctx, MessageText, []byte(fmt.Sprintf("message %03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		_, p, err := client.Read(ctx)
		if want := fmt.Sprintf("message %03d", i); err != nil || string(p) != want {
			t.Fatalf("echo %d: %q, %v; want %q", i, p, err, want)
		}
	}
}
