package websocket_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"runtime"
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
	url := startServer(t, limitedEcho(0, done))
	rc := dialRaw(t, url, "", nil)
	rc.nc.SetDeadline(time.Now().Add(60 * time.Second))
	// A small receive buffer, and more pongs (8 MB) than the server's
	// send buffer can take (Linux's default maximum is 4 MiB).
	rc.nc.(*net.TCPConn).SetReadBuffer(16 << 10)
	const chunks, perChunk = 64, 1000
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
	// Give the server time to fill the socket buffers with pongs.
	time.Sleep(300 * time.Millisecond)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	time.Sleep(300 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if after.HeapAlloc > before.HeapAlloc+4<<20 {
		t.Errorf("live heap grew from %d to %d bytes while the peer did not read its pongs", before.HeapAlloc, after.HeapAlloc)
	}
	select {
	case err := <-sent:
		t.Fatalf("the server took all %d pings without the pongs being read (write: %v)", chunks*perChunk, err)
	default:
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
