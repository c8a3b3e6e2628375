package websocket_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// groupServer serves WebSocket connections that it adds to g. A request
// for a URL with ?read has its connection read until it ends, and the
// error sent on reads (if not nil); the others are left alone, with
// nothing reading them, once added.
func groupServer(t *testing.T, g *websocket.Group, reads chan<- error) string {
	return startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		g.Add(c)
		if !r.URL.Query().Has("read") {
			return
		}
		defer c.CloseNow()
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				if reads != nil {
					reads <- err
				}
				return
			}
		}
	})
}

// waitLen waits until g has n connections.
func waitLen(ctx context.Context, t *testing.T, g *websocket.Group, n int) {
	t.Helper()
	for g.Len() != n {
		select {
		case <-ctx.Done():
			t.Fatalf("the group has %d connections; want %d", g.Len(), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// readUntilClosed reads from c until it fails and returns the error.
func readUntilClosed(ctx context.Context, c *websocket.Conn) error {
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return err
		}
	}
}

// wantGoingAway reports whether err is the Close frame Shutdown sends.
func wantGoingAway(err error) error {
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "server shutting down" {
		return fmt.Errorf("connection ended with %v; want close 1001 \"server shutting down\"", err)
	}
	return nil
}

// Shutdown sends every connection 1001 and returns once the closing
// handshakes are done, whether or not the server side had a goroutine
// reading; the group is then empty.
func TestGroupShutdown(t *testing.T) {
	const n = 40
	ctx := testContext(t)
	var g websocket.Group
	reads := make(chan error, n)
	url := groupServer(t, &g, reads)
	clientErrs := make(chan error, n)
	for i := range n {
		u := url
		if i%2 == 0 {
			u += "?read"
		}
		c, _, err := websocket.Dial(ctx, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		// The clients send a message now and then, so that a server
		// side that reads itself during Close has data to skip.
		if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		go func() { clientErrs <- readUntilClosed(ctx, c) }()
	}
	waitLen(ctx, t, &g, n)

	// Twice at once, as a server might from RegisterOnShutdown and from
	// main: each connection is still closed once, with a full handshake.
	start := time.Now()
	second := make(chan error, 1)
	go func() { second <- g.Shutdown(ctx) }()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	t.Logf("%d connections closed in %v", n, time.Since(start))
	if g.Len() != 0 {
		t.Errorf("after Shutdown the group has %d connections", g.Len())
	}
	for range n {
		if err := wantGoingAway(<-clientErrs); err != nil {
			t.Errorf("client: %v", err)
		}
	}
	for range n / 2 {
		// The server's reader sees the client's answer.
		if err := <-reads; websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("server reader: %v; want the client's 1001 echoed", err)
		}
	}
}

// Peers that never answer the Close frame are closed without a handshake
// when ctx is done, and Shutdown says so; peers that answer are closed
// properly in the meantime.
func TestGroupShutdownForcesSilentPeers(t *testing.T) {
	const live, silent = 10, 3
	ctx := testContext(t)
	var g websocket.Group
	url := groupServer(t, &g, nil)
	clientErrs := make(chan error, live)
	var silentConns []*websocket.Conn
	for i := range live + silent {
		u := url
		if i%2 == 0 {
			u += "?read"
		}
		c, _, err := websocket.Dial(ctx, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if i < live {
			go func() { clientErrs <- readUntilClosed(ctx, c) }()
		} else {
			silentConns = append(silentConns, c) // nothing reads it
		}
	}
	waitLen(ctx, t, &g, live+silent)

	shutCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := g.Shutdown(shutCtx)
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v; want context.DeadlineExceeded", err)
	}
	// Well within the five seconds Close would wait for an answer.
	if elapsed > 2*time.Second {
		t.Errorf("Shutdown took %v with a 300ms deadline", elapsed)
	}
	if g.Len() != 0 {
		t.Errorf("after Shutdown the group has %d connections", g.Len())
	}
	for range live {
		if err := wantGoingAway(<-clientErrs); err != nil {
			t.Errorf("live client: %v", err)
		}
	}
	// The silent peers were sent the Close frame before being cut off.
	for _, c := range silentConns {
		if err := wantGoingAway(readUntilClosed(ctx, c)); err != nil {
			t.Errorf("silent client: %v", err)
		}
	}
}

// Connections added while Shutdown runs, and after it returned, are closed
// with 1001 at once; Shutdown on an empty group returns at once.
func TestGroupAddDuringShutdown(t *testing.T) {
	const before, during, after = 5, 10, 5
	ctx := testContext(t)
	var g websocket.Group
	url := groupServer(t, &g, nil)
	errs := make(chan error, before+during+after)
	var wg sync.WaitGroup
	client := func(i int) {
		defer wg.Done()
		c, _, err := websocket.Dial(ctx, url+"?read", nil)
		if err != nil {
			errs <- err
			return
		}
		defer c.CloseNow()
		if i%2 == 0 {
			// Some clients speak before they hear the server leave.
			c.Write(ctx, websocket.MessageText, []byte("hi"))
		}
		errs <- wantGoingAway(readUntilClosed(ctx, c))
	}
	for i := range before {
		wg.Add(1)
		go client(i)
	}
	waitLen(ctx, t, &g, before)
	shut := make(chan error, 1)
	go func() { shut <- g.Shutdown(ctx) }()
	for i := range during {
		wg.Add(1)
		go client(i)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	for i := range after {
		wg.Add(1)
		client(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	waitLen(ctx, t, &g, 0)

	var empty websocket.Group
	done := make(chan error)
	go func() { done <- empty.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("Shutdown of an empty group did not return")
	}
}

// A connection leaves its groups when it closes, however it closes; adding
// it twice counts it once, and adding a closed one adds nothing.
func TestGroupForgetsClosedConns(t *testing.T) {
	ctx := testContext(t)
	var g, other websocket.Group
	var pairs [4][2]*websocket.Conn
	for i := range pairs {
		client, server := loopbackPair(t)
		g.Add(server)
		g.Add(server)
		other.Add(server)
		pairs[i] = [2]*websocket.Conn{client, server}
	}
	if g.Len() != len(pairs) || other.Len() != len(pairs) {
		t.Fatalf("Len = %d and %d; want %d", g.Len(), other.Len(), len(pairs))
	}

	// The client closes with a handshake, which the server's reader sees.
	go pairs[0][1].Read(ctx)
	if err := pairs[0][0].Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	// The server closes with a handshake.
	go pairs[1][0].Read(ctx)
	if err := pairs[1][1].Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	// The server closes without one.
	pairs[2][1].CloseNow()
	// The client vanishes, which the server's reader notices.
	pairs[3][0].CloseNow()
	if _, _, err := pairs[3][1].Read(ctx); websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
		t.Fatalf("read after the client vanished: %v", err)
	}
	waitLen(ctx, t, &g, 0)
	waitLen(ctx, t, &other, 0)

	g.Add(pairs[0][1])
	if g.Len() != 0 {
		t.Fatalf("adding a closed connection: Len = %d; want 0", g.Len())
	}
}

// A Close called while another Close waits for the peer's answer must not
// cut that handshake short: it waits for the first to finish, which then
// completes, and reports that the connection was already closing. It
// matters to a Group, whose Shutdown may race an application's own Close
// (and the application's deferred CloseNow after it).
func TestCloseDuringClose(t *testing.T) {
	client, server := loopbackPair(t)
	first := make(chan error, 1)
	go func() { first <- server.Close(websocket.StatusGoingAway, "first") }()
	time.Sleep(20 * time.Millisecond) // the first Close frame is out
	secondDone := make(chan error, 1)
	go func() { secondDone <- server.Close(websocket.StatusNormalClosure, "second") }()
	select {
	case err := <-secondDone:
		t.Fatalf("the second Close returned %v before the first finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	// Only now does the peer read, and answer.
	var ce websocket.CloseError
	if err := readUntilClosed(testContext(t), client); !errors.As(err, &ce) || ce.Reason != "first" {
		t.Errorf("the peer read %v; want the first Close frame", err)
	}
	if err := <-first; err != nil {
		t.Errorf("the first Close = %v; want nil, its handshake completed", err)
	}
	second := <-secondDone
	if !errors.Is(second, net.ErrClosed) {
		t.Errorf("the second Close = %v; want an error wrapping net.ErrClosed", second)
	}
}
