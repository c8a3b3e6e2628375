package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
	"github.com/duplex-go/websocket/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// startServer serves s on a loopback port until the test ends and returns
// the ticks' URL.
func startServer(t *testing.T, s *server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startServerOn(t, s, ln)
}

func startServerOn(t *testing.T, s *server, ln net.Listener) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, s) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "ws://" + ln.Addr().String() + "/ws"
}

func dial(ctx context.Context, t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func readTick(ctx context.Context, c *websocket.Conn) (tick, time.Time, error) {
	_, data, err := c.Read(ctx)
	now := time.Now()
	if err != nil {
		return tick{}, now, err
	}
	var tk tick
	err = json.Unmarshal(data, &tk)
	return tk, now, err
}

// waitClients waits until s has n clients.
func waitClients(ctx context.Context, t *testing.T, s *server, n int) {
	t.Helper()
	for {
		s.mu.Lock()
		got := len(s.clients)
		s.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the server has %d clients; want %d", got, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Fifty clients each receive 100 consecutive ticks, in order, in time.
func TestFanOut(t *testing.T) {
	const clients, ticks = 50, 100
	const interval = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A queue that holds every tick: this test is about order and timing,
	// and on a machine busy enough to starve a writer goroutine for the
	// default queue's 320ms the client would be dropped
	// (TestSlowClientIsDropped).
	s := newServer(interval, ticks)
	url := startServer(t, s)
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dial(ctx, t, url)
	}
	waitClients(ctx, t, s, clients)

	start := time.Now()
	errs := make(chan error, clients)
	for i, c := range conns {
		go func() {
			var first, last uint64
			for n := range ticks {
				tk, _, err := readTick(ctx, c)
				switch {
				case err != nil:
					errs <- fmt.Errorf("client %d, tick %d: %w", i, n, err)
					return
				case len(tk.Quotes) == 0:
					errs <- fmt.Errorf("client %d: tick %d has no quotes", i, tk.Seq)
					return
				case last != 0 && tk.Seq != last+1:
					errs <- fmt.Errorf("client %d: tick %d after %d", i, tk.Seq, last)
					return
				}
				if first == 0 {
					first = tk.Seq
				}
				last = tk.Seq
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// 100 ticks take a second; allow for a slow machine and the race
	// detector, but not for ticks that pile up.
	if elapsed := time.Since(start); elapsed > ticks*interval*5 {
		t.Errorf("%d clients took %v to receive %d ticks sent %v apart", clients, elapsed, ticks, interval)
	}
	closeAll(conns)
}

// closeAll closes conns concurrently, as a load does.
func closeAll(conns []*websocket.Conn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Close(websocket.StatusNormalClosure, "")
		}()
	}
	wg.Wait()
}

// smallSendBuffers is a listener whose connections have a fixed 16 KiB send
// buffer instead of one that Linux grows up to 4 MiB: a client that does
// not read then blocks the server's writes after a few hundred ticks, not
// after thousands.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err == nil {
		err = nc.(*net.TCPConn).SetWriteBuffer(16 << 10)
	}
	return nc, err
}

// A client that never reads is dropped with status 1008 once its queue is
// full, while the others go on receiving every tick on time.
func TestSlowClientIsDropped(t *testing.T) {
	// Fast ticks, and a queue of 200 ms: time enough for any client that
	// reads, even under the race detector on a busy machine.
	const interval, queue = 2 * time.Millisecond, 100
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newServer(interval, queue)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := startServerOn(t, s, smallSendBuffers{ln})
	slow := dial(ctx, t, url)
	fast := []*websocket.Conn{dial(ctx, t, url), dial(ctx, t, url), dial(ctx, t, url)}
	waitClients(ctx, t, s, 1+len(fast))

	// The fast clients read until a tick goes to the fast ones only after
	// one that went to all, and then another 200 ticks.
	type outcome struct {
		ticks  int
		maxLag time.Duration
		err    error
	}
	results := make(chan outcome, len(fast))
	for _, c := range fast {
		go func() {
			var o outcome
			var last uint64
			all := false // a tick went to all the clients
			after := -1  // ticks since the slow client was dropped
			for after < 200 {
				tk, now, err := readTick(ctx, c)
				if err != nil {
					o.err = err
					break
				}
				if last != 0 && tk.Seq != last+1 {
					o.err = fmt.Errorf("tick %d after %d", tk.Seq, last)
					break
				}
				last = tk.Seq
				o.ticks++
				o.maxLag = max(o.maxLag, now.Sub(time.UnixMicro(tk.Time)))
				all = all || tk.Clients == len(fast)+1
				if after >= 0 || all && tk.Clients == len(fast) {
					after++
				}
			}
			results <- o
		}()
	}
	for range fast {
		o := <-results
		if o.err != nil {
			t.Fatal(o.err)
		}
		t.Logf("a fast client received %d ticks, the latest %v after it was sent", o.ticks, o.maxLag)
		// The slow client was stuck for longer than this; had the server
		// waited for it, the fast clients would have waited as long.
		if o.maxLag > time.Second {
			t.Errorf("a fast client received a tick %v after it was sent", o.maxLag)
		}
	}

	// The slow client, reading at last, finds what fitted in the buffers
	// and then the Close frame.
	for {
		_, _, err := slow.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "too slow to keep up" {
			t.Fatalf("slow client: %v, want close 1008", err)
		}
		break
	}
	closeAll(fast)
}

// Stopping the server closes every client's connection with 1001 and
// waits for the closing handshakes: the clients see the server go away, not
// a broken connection, and serve returns once none is left.
func TestShutdown(t *testing.T) {
	const clients = 10
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(5*time.Millisecond, defaultQueueSize)
	srvCtx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- serve(srvCtx, ln, s) }()
	url := "ws://" + ln.Addr().String() + "/ws"

	ended := make(chan error, clients)
	for range clients {
		c := dial(ctx, t, url)
		go func() {
			for {
				if _, _, err := c.Read(ctx); err != nil {
					ended <- err
					return
				}
			}
		}()
	}
	waitClients(ctx, t, s, clients)
	stop()
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	for range clients {
		var ce websocket.CloseError
		if err := <-ended; !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
			t.Errorf("a client's connection ended with %v; want close 1001", err)
		}
	}
	if n := s.conns.Len(); n != 0 {
		t.Errorf("%d connections left after shutdown", n)
	}
}

// The load mode, against a server of its own, reports that its clients
// received ticks at about the rate they were sent, and the latencies.
func TestLoad(t *testing.T) {
	const clients, interval, duration = 10, 10 * time.Millisecond, time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newServer(interval, defaultQueueSize)
	url := startServer(t, s)
	res, err := runLoad(ctx, url, clients, duration)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res)
	// 10 clients × 100 ticks a second, give or take a slow machine.
	if res.rate() < 0.25*clients*float64(time.Second/interval) || res.percentile(0.5) <= 0 {
		t.Errorf("rate %.1f messages/s, p50 %v", res.rate(), res.percentile(0.5))
	}
	if res.dropped != 0 || res.missed != 0 {
		t.Errorf("%d clients dropped, %d ticks missed", res.dropped, res.missed)
	}
	out := res.String()
	for _, want := range []string{"messages/s", "p50", "p90", "p99", "max"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	waitClients(ctx, t, s, 0)
}

// The load mode starts its own server when given no URL.
func TestLoadInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := load(ctx, "", 3, 300*time.Millisecond, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
