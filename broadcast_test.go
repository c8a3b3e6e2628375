package websocket_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// A prepared message reaches server and client connections alike, with and
// without compression, framed once per kind of connection, small and larger
// than a write buffer.
func TestPreparedMessage(t *testing.T) {
	for _, repeat := range []int{100, 20000} {
		t.Run(fmt.Sprint(repeat*11, " bytes"), func(t *testing.T) { testPreparedMessage(t, repeat) })
	}
}

func testPreparedMessage(t *testing.T, repeat int) {
	comps := []*websocket.CompressionOptions{nil, {}, {Level: 9}, {ContextTakeover: true}}
	var mu sync.Mutex
	var serverConns []*websocket.Conn
	ready := make(chan struct{}, len(comps))
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Compression: &websocket.CompressionOptions{}})
		if err != nil {
			return
		}
		mu.Lock()
		serverConns = append(serverConns, c)
		mu.Unlock()
		ready <- struct{}{}
	})
	ctx := testContext(t)
	var clients []*websocket.Conn
	for _, comp := range comps {
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Compression: comp})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		clients = append(clients, c)
		<-ready
	}
	msg := bytes.Repeat([]byte("tick 42.17 "), repeat)
	pm := websocket.NewPreparedMessage(websocket.MessageText, msg)
	for _, sc := range serverConns {
		defer sc.CloseNow()
		for i := 0; i < 2; i++ {
			if err := sc.WritePrepared(ctx, pm); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Clients write it too (masked, so only the payload is shared).
	for _, c := range clients {
		if err := c.WritePrepared(ctx, pm); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range clients {
		for j := 0; j < 2; j++ {
			typ, got, err := c.Read(ctx)
			if err != nil || typ != websocket.MessageText || !bytes.Equal(got, msg) {
				t.Fatalf("client %d message %d: %v %d bytes, %v", i, j, typ, len(got), err)
			}
		}
	}
	for i, sc := range serverConns {
		if _, got, err := sc.Read(ctx); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("server %d: %d bytes, %v", i, len(got), err)
		}
	}
}

// CloseRead lets a write-only server see the peer's Close frame.
func TestCloseRead(t *testing.T) {
	done := make(chan error, 1)
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := c.CloseRead(r.Context())
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				done <- nil
				return
			case <-time.After(5 * time.Millisecond):
			}
			if err := c.Write(context.Background(), websocket.MessageText, []byte("tick")); err != nil {
				done <- nil
				return
			}
		}
	})
	ctx := testContext(t)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "tick" {
		t.Fatalf("%q, %v", msg, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's CloseRead context was not done after the client closed")
	}
}

// Keepalive closes a connection whose peer stops answering pings.
func TestKeepAliveClosesSilentPeer(t *testing.T) {
	readErr := make(chan error, 1)
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetKeepAlive(50*time.Millisecond, 50*time.Millisecond)
		_, _, err = c.Read(context.Background())
		readErr <- err
	})
	rc := dialRaw(t, url, "", nil) // reads nothing, answers nothing
	_ = rc
	select {
	case err := <-readErr:
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte("keepalive")) {
			t.Fatalf("read ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("keepalive did not close the connection")
	}
}

// Keepalive leaves a connection whose peer answers alone.
func TestKeepAliveKeepsLivePeer(t *testing.T) {
	readErr := make(chan error, 1)
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetKeepAlive(20*time.Millisecond, 100*time.Millisecond)
		_, _, err = c.Read(context.Background())
		readErr <- err
	})
	ctx := testContext(t)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	pings := 0
	c.OnPing(func([]byte) { pings++ })
	short, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	defer cancel()
	c.Read(short) // answers pings until the timeout
	if pings < 5 {
		t.Fatalf("saw %d keepalive pings in 400ms at a 20ms interval", pings)
	}
	c.Close(websocket.StatusNormalClosure, "")
	if err := <-readErr; websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("server read ended with %v", err)
	}
}
