package websocket_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// awaitEcho serves c with AwaitMessage: every message is echoed, and the
// error that ended the connection is sent on done. calls counts how often
// the function ran.
func awaitEcho(c *websocket.Conn, calls *atomic.Int64, done chan<- error) {
	ctx := context.Background()
	var serve func()
	serve = func() {
		calls.Add(1)
		typ, msg, err := c.Read(ctx)
		if err == nil {
			err = c.Write(ctx, typ, msg)
		}
		if err != nil {
			c.CloseNow()
			done <- err
			return
		}
		c.AwaitMessage(serve)
	}
	c.AwaitMessage(serve)
}

// awaitEnd returns the error awaitEcho reports on done, failing the test
// if ctx ends first.
func awaitEnd(t *testing.T, ctx context.Context, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		t.Fatal("the awaiting function was not called when the connection ended")
		return nil
	}
}

// Messages sent one at a time and many at once are all echoed, in order,
// and the peer's Close reaches the function as a CloseError, with the
// closing handshake completed.
func TestAwaitMessageEcho(t *testing.T) {
	ctx := testContext(t)
	client, server := loopbackPair(t)
	var calls atomic.Int64
	done := make(chan error, 1)
	awaitEcho(server, &calls, done)

	for i := range 20 {
		msg := []byte(fmt.Sprint("one at a time ", i))
		if err := client.Write(ctx, websocket.MessageText, msg); err != nil {
			t.Fatal(err)
		}
		if _, got, err := client.Read(ctx); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
	}
	const n = 200
	go func() {
		for i := range n {
			if err := client.Write(ctx, websocket.MessageBinary, []byte(fmt.Sprint("pipelined ", i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range n {
		_, got, err := client.Read(ctx)
		if want := fmt.Sprint("pipelined ", i); err != nil || string(got) != want {
			t.Fatalf("pipelined echo %d: %q, %v; want %q", i, got, err, want)
		}
	}
	if err := client.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("client Close: %v", err)
	}
	if err := awaitEnd(t, ctx, done); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("server read ended with %v; want the peer's Close", err)
	}
	if got := calls.Load(); got != 20+n+1 {
		t.Errorf("the function ran %d times for %d messages and a Close; want %d", got, 20+n, 20+n+1)
	}
}

// Pings and pongs arriving while a connection awaits are handled without
// calling the application: a ping is answered, and the application runs
// only for the data message that follows.
func TestAwaitMessageControlFrames(t *testing.T) {
	ctx := testContext(t)
	client, server := loopbackPair(t)
	var calls atomic.Int64
	done := make(chan error, 1)
	awaitEcho(server, &calls, done)

	// The client must read for its pings' pongs to arrive.
	echoes := make(chan []byte, 1)
	go func() {
		defer close(echoes)
		for {
			_, msg, err := client.Read(ctx)
			if err != nil {
				return
			}
			echoes <- msg
		}
	}()
	for i := range 5 {
		if err := client.Ping(ctx); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	if got := calls.Load(); got != 0 && runtime.GOOS == "linux" {
		t.Fatalf("the function ran %d times for pings alone; want 0", got)
	}
	if err := client.Write(ctx, websocket.MessageText, []byte("after the pings")); err != nil {
		t.Fatal(err)
	}
	if got := <-echoes; string(got) != "after the pings" {
		t.Fatalf("echo %q", got)
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("the function ran %d times for one message; want 1", got)
	}
}

// wrappedConn hides the socket beneath it, as a metering or PROXY-protocol
// wrapper does: no poller may watch it.
type wrappedConn struct{ net.Conn }

// A connection that cannot be watched calls the function at once, and its
// read waits as usual: AwaitMessage still serves every message, ping and
// close.
func TestAwaitMessageWithoutPoller(t *testing.T) {
	ctx := testContext(t)
	accepted := make(chan *websocket.Conn, 1)
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		accepted <- c
	})
	dial := &net.Dialer{}
	client, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := dial.DialContext(ctx, network, addr)
			return wrappedConn{nc}, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseNow()
	server := <-accepted
	defer server.CloseNow()
	var calls atomic.Int64
	done := make(chan error, 1)
	awaitEcho(client, &calls, done)

	echoes := make(chan string, 1)
	go func() {
		for {
			_, msg, err := server.Read(ctx)
			if err != nil {
				return
			}
			echoes <- string(msg)
		}
	}()
	if err := server.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	for i := range 3 {
		msg := fmt.Sprint("message ", i)
		if err := server.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if got := <-echoes; got != msg {
			t.Fatalf("echo %q; want %q", got, msg)
		}
	}
	if err := server.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("client read ended with %v; want the peer's Close", err)
	}
}

// An awaiting connection that ends, however it ends, calls the function,
// whose read reports how.
func TestAwaitMessageClosed(t *testing.T) {
	ctx := testContext(t)
	for _, tc := range []struct {
		name string
		end  func(client, server *websocket.Conn) // while the server awaits
		ok   func(err error) bool
	}{
		{"CloseNow",
			func(_, server *websocket.Conn) { server.CloseNow() },
			func(err error) bool { return errors.Is(err, net.ErrClosed) }},
		{"peer vanishes",
			func(client, _ *websocket.Conn) { client.CloseNow() },
			func(err error) bool { return websocket.CloseStatus(err) == websocket.StatusAbnormalClosure }},
		{"Close", // our closing handshake: Close reads the answer itself
			func(_, server *websocket.Conn) {
				if err := server.Close(websocket.StatusGoingAway, "shutting down"); err != nil {
					t.Errorf("Close: %v", err)
				}
			},
			func(err error) bool { return websocket.CloseStatus(err) == websocket.StatusGoingAway }},
		{"protocol violation", // a ping too long for a control frame
			func(client, _ *websocket.Conn) {
				nc := client.NetConn()
				nc.Write([]byte{0x89, 0x80 | 126, 0, 200, 1, 2, 3, 4})
			},
			func(err error) bool { return websocket.CloseStatus(err) == websocket.StatusProtocolError }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := loopbackPair(t)
			var calls atomic.Int64
			done := make(chan error, 1)
			awaitEcho(server, &calls, done)
			go readUntilClosed(ctx, client)   // answers our Close frames
			time.Sleep(10 * time.Millisecond) // let it be watched
			tc.end(client, server)
			if err := awaitEnd(t, ctx, done); !tc.ok(err) {
				t.Fatalf("the function's read returned %v", err)
			}
		})
	}
}

// A read deadline set before AwaitMessage ends the wait: the function runs
// and its read fails with the deadline, and the connection stays usable.
func TestAwaitMessageReadDeadline(t *testing.T) {
	ctx := testContext(t)
	client, server := loopbackPair(t)
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	errs := make(chan error, 1)
	server.AwaitMessage(func() {
		_, _, err := server.Read(ctx)
		errs <- err
	})
	err := <-errs
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after the deadline: %v; want os.ErrDeadlineExceeded", err)
	}
	if waited := time.Since(start); waited < 40*time.Millisecond {
		t.Fatalf("the function ran after %v, before the deadline", waited)
	}

	server.SetReadDeadline(time.Time{})
	var calls atomic.Int64
	done := make(chan error, 1)
	awaitEcho(server, &calls, done)
	if err := client.Write(ctx, websocket.MessageText, []byte("still usable")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := client.Read(ctx); err != nil || string(msg) != "still usable" {
		t.Fatalf("echo after the deadline: %q, %v", msg, err)
	}
}

// Keepalive works while a connection awaits: the peer's pongs are seen, so
// a peer that answers is kept, and one that stops answering is closed and
// the function told.
func TestAwaitMessageKeepAlive(t *testing.T) {
	ctx := testContext(t)
	client, server := loopbackPair(t)
	server.SetKeepAlive(20*time.Millisecond, 15*time.Millisecond)
	var calls atomic.Int64
	done := make(chan error, 1)
	awaitEcho(server, &calls, done)
	reading, stopReading := context.WithCancel(ctx)
	readStopped := make(chan struct{})
	go func() {
		defer close(readStopped)
		readUntilClosed(reading, client)
	}()
	time.Sleep(200 * time.Millisecond) // ten keepalive rounds, answered
	select {
	case err := <-done:
		t.Fatalf("an answering peer was dropped: %v", err)
	default:
	}
	stopReading()
	<-readStopped
	if err := awaitEnd(t, ctx, done); !strings.Contains(err.Error(), "keepalive") {
		t.Fatalf("read after keepalive failed: %v; want it to say keepalive", err)
	}
}

// Calling AwaitMessage again before the function runs replaces it.
func TestAwaitMessageReplaces(t *testing.T) {
	ctx := testContext(t)
	client, server := loopbackPair(t)
	ran := make(chan string, 2)
	server.AwaitMessage(func() { ran <- "first" })
	server.AwaitMessage(func() {
		_, msg, err := server.Read(ctx)
		if err != nil {
			ran <- err.Error()
			return
		}
		ran <- "second: " + string(msg)
	})
	if err := client.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if got := <-ran; got != "second: hi" {
		t.Fatalf("ran %q; want the second function", got)
	}
	select {
	case got := <-ran:
		t.Fatalf("also ran %q", got)
	case <-time.After(20 * time.Millisecond):
	}
}

// Awaiting connections hold no goroutine while idle (where a poller watches
// them), and many connections opening, echoing and closing at once each get
// their own messages, with descriptors reused all along.
func TestAwaitMessageManyConnections(t *testing.T) {
	ctx := testContext(t)
	const conns = 64
	var calls atomic.Int64
	done := make(chan error, conns*4)
	accepted := make(chan *websocket.Conn, conns)
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		awaitEcho(c, &calls, done)
		accepted <- c
	})
	clients := make([]*websocket.Conn, conns)
	for i := range clients {
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		clients[i] = c
		<-accepted
	}
	echo := func(i int, c *websocket.Conn) error {
		msg := fmt.Sprintf("connection %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return err
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
			return fmt.Errorf("connection %d got %q, %v", i, got, err)
		}
		return nil
	}
	for i, c := range clients {
		if err := echo(i, c); err != nil {
			t.Fatal(err)
		}
	}
	if runtime.GOOS == "linux" {
		// The server side holds no goroutine; the clients' own
		// goroutines are not in this package's await code.
		var busy []string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if busy = goroutinesIn("serveAwait"); len(busy) == 0 {
				break
			}
		}
		if len(busy) > 0 {
			t.Fatalf("%d goroutines still serve idle awaiting connections:\n%s", len(busy), busy[0])
		}
	}

	// Churn: connections close and new ones open while others echo.
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				c, _, err := websocket.Dial(ctx, url, nil)
				if err != nil {
					t.Error(err)
					return
				}
				<-accepted
				for k := range 3 {
					if err := echo(w*1000+j*10+k, c); err != nil {
						t.Error(err)
					}
				}
				if j%2 == 0 {
					c.Close(websocket.StatusNormalClosure, "")
				} else {
					c.CloseNow()
				}
			}
		}()
	}
	for i, c := range clients {
		if err := echo(i, c); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
}

// goroutinesIn returns the stacks of goroutines running a function whose
// name contains fn.
func goroutinesIn(fn string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			found = append(found, g)
		}
	}
	return found
}
