package websocket_test

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// Limits a server needs against a hostile peer beyond the read limit (see
// TestProtocolViolations): messages in endless fragments and ping floods.

// limitedEcho is echoHandler with a fragment limit.
func limitedEcho(fragments int, done chan<- error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			done <- err
			return
		}
		defer c.CloseNow()
		if fragments != 0 {
			c.SetFragmentLimit(fragments)
		}
		for {
			typ, msg, err := c.Read(context.Background())
			if err == nil {
				err = c.Write(context.Background(), typ, msg)
			}
			if err != nil {
				done <- err
				return
			}
		}
	}
}

func TestFragmentLimit(t *testing.T) {
	done := make(chan error, 1)
	url := startServer(t, limitedEcho(3, done))
	rc := dialRaw(t, url, "", nil)
	rc.send(frame(false, websocket.OpText, []byte("a")),
		frame(false, websocket.OpContinuation, []byte("b")),
		frame(true, websocket.OpContinuation, []byte("c")))
	if h, p := rc.next(); h.Opcode != websocket.OpText || string(p) != "abc" {
		t.Fatalf("a message in 3 frames, at the limit: got %v %q", h.Opcode, p)
	}
	rc.send(frame(false, websocket.OpText, []byte("a")),
		frame(false, websocket.OpContinuation, nil),
		frame(false, websocket.OpContinuation, nil),
		frame(true, websocket.OpContinuation, []byte("d")))
	rc.expectClose(websocket.StatusPolicyViolation)
	if err := <-done; websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("server's read error: %v", err)
	}
}

// A message that never ends, in empty fragments the read limit cannot
// see, is cut off at the default fragment limit without the server
// allocating per frame.
func TestEmptyFragmentFlood(t *testing.T) {
	done := make(chan error, 1)
	url := startServer(t, limitedEcho(0, done))
	rc := dialRaw(t, url, "", nil)
	empty := frame(false, websocket.OpContinuation, nil)
	flood := append(frame(false, websocket.OpBinary, nil), bytes.Repeat(empty, websocket.DefaultFragmentLimit+10)...)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := rc.nc.Write(flood); err != nil {
		t.Fatal(err)
	}
	rc.expectClose(websocket.StatusPolicyViolation)
	err := <-done
	runtime.ReadMemStats(&after)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("server's read error: %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<10 {
		t.Errorf("%d empty fragments cost %d bytes of allocation", websocket.DefaultFragmentLimit, grew)
	}
}

// A peer that floods pings and never reads the pongs is backpressured: the
// server answers each ping as it reads it and stops reading when its pongs
// cannot be sent, so nothing queues up in memory. Once the peer reads,
// every ping has its pong, in order.
func TestPingFloodIsBackpressured(t *testing.T) {
	done := make(chan error, 1)
	var answered atomic.Int64
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			done <- err
			return
		}
		defer c.CloseNow()
		c.OnPing(func([]byte) { answered.Add(1) })
		_, _, err = c.Read(context.Background())
		done <- err
	})
	rc := dialRaw(t, url, "", nil)
	rc.nc.SetDeadline(time.Now().Add(60 * time.Second))
	// More pongs (16 MB) than the socket buffers between us can hold
	// (Linux's default maximum is 4 MiB for sending and 6 MiB for
	// receiving). The receive buffer keeps its default size: one much
	// smaller than loopback's 64 KiB segments can leave the window shut
	// for as long as the kernel's zero-window probes back off, which once
	// outlasted this test's deadline.
	const chunks, perChunk = 128, 1000
	payload := bytes.Repeat([]byte{'p'}, 125)
	chunk := bytes.Repeat(frame(true, websocket.OpPing, payload), perChunk)
	sent := make(chan error, 1)
	go func() {
		for i := 0; i < chunks; i++ {
			if _, err := rc.nc.Write(chunk); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	// Wait for the server to stop answering: its pongs fill the buffers.
	var before, after runtime.MemStats
	last := int64(-1)
	for i := 0; ; i++ {
		time.Sleep(200 * time.Millisecond)
		n := answered.Load()
		if n == last {
			break
		}
		if i == 100 {
			t.Fatalf("the server kept answering pings whose pongs nobody read: %d so far", n)
		}
		last = n
	}
	runtime.GC()
	runtime.ReadMemStats(&before)
	time.Sleep(300 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := answered.Load(); n != last || n >= chunks*perChunk {
		t.Fatalf("the server answered %d pings, then %d, of %d whose pongs nobody read", last, n, chunks*perChunk)
	}
	t.Logf("the server stopped after answering %d of %d pings", last, chunks*perChunk)
	if after.HeapAlloc > before.HeapAlloc+1<<20 {
		t.Errorf("live heap grew from %d to %d bytes while the peer did not read its pongs", before.HeapAlloc, after.HeapAlloc)
	}
	for i := 0; i < chunks*perChunk; i++ {
		h, p := rc.next()
		if h.Opcode != websocket.OpPong || !bytes.Equal(p, payload) {
			t.Fatalf("frame %d: %v with %d bytes, want the pong", i, h.Opcode, len(p))
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	rc.send(frame(true, websocket.OpClose, []byte{0x03, 0xE8}))
	rc.expectClose(websocket.StatusNormalClosure)
	if err := <-done; websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("server's read error: %v", err)
	}
}
