package websocket_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/duplex-go/websocket"
)

// connectProxy is an HTTP proxy that tunnels CONNECT requests carrying the
// expected Basic credentials, and counts the tunnels it opened.
func connectProxy(t *testing.T, user, pass string, tunnels *atomic.Int32) *url.URL {
	t.Helper()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		if r.Header.Get("Proxy-Authorization") != want {
			http.Error(w, "bad credentials", http.StatusProxyAuthRequired)
			return
		}
		upstream, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		client, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			upstream.Close()
			return
		}
		tunnels.Add(1)
		brw.Flush()
		go func() {
			io.Copy(upstream, brw)
			upstream.Close()
		}()
		io.Copy(client, upstream)
		client.Close()
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	u.User = url.UserPassword(user, pass)
	return u
}

// Dial tunnels through an HTTP proxy with CONNECT, sending the proxy URL's
// credentials, and reports a proxy's refusal.
func TestDialThroughProxy(t *testing.T) {
	target := startServer(t, echoHandler(t, nil, 0, nil))
	var tunnels atomic.Int32
	proxy := connectProxy(t, "alice", "s3cret", &tunnels)
	ctx := testContext(t)

	c, _, err := websocket.Dial(ctx, target, &websocket.DialOptions{Proxy: http.ProxyURL(proxy)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("via proxy")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "via proxy" {
		t.Fatalf("%q, %v", msg, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	if tunnels.Load() != 1 {
		t.Fatalf("proxy opened %d tunnels, want 1", tunnels.Load())
	}

	wrong := *proxy
	wrong.User = url.UserPassword("alice", "wrong")
	if _, _, err := websocket.Dial(ctx, target, &websocket.DialOptions{Proxy: http.ProxyURL(&wrong)}); err == nil {
		t.Fatal("Dial succeeded with wrong proxy credentials")
	}
}

// Dial uses the caller's dial function, and its context bounds it.
func TestDialCustomDialerAndContext(t *testing.T) {
	target := startServer(t, echoHandler(t, nil, 0, nil))
	var dials atomic.Int32
	opts := &websocket.DialOptions{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	c, _, err := websocket.Dial(testContext(t), target, opts)
	if err != nil {
		t.Fatal(err)
	}
	c.CloseNow()
	if dials.Load() != 1 {
		t.Fatalf("custom dialer called %d times", dials.Load())
	}

	// A server that accepts TCP but never answers the handshake: the
	// context's deadline ends Dial.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if nc, err := ln.Accept(); err == nil {
			defer nc.Close()
			io.Copy(io.Discard, nc)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*1e6)
	defer cancel()
	if _, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a silent server returned %v", err)
	}
}
