package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// The echo server echoes text and binary, compressed or not, up to its
// 32 MiB limit, and refuses a larger message with status 1009, behind
// net/http and behind websocket.Serve (-serve).
func TestEchoServer(t *testing.T) {
	for _, light := range []bool{false, true} {
		t.Run(map[bool]string{false: "net-http", true: "Serve"}[light], func(t *testing.T) {
			testEchoServer(t, light)
		})
	}
}

func testEchoServer(t *testing.T, light bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve(ln, nil, light)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := "ws://" + ln.Addr().String() + "/"
	for _, comp := range []*websocket.CompressionOptions{nil, {}} {
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Compression: comp})
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadLimit(64 << 20)
		for _, n := range []int{0, 10, 70000, 16 << 20} {
			msg := bytes.Repeat([]byte("echo "), n/5)
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				t.Fatal(err)
			}
			typ, got, err := c.Read(ctx)
			if err != nil || typ != websocket.MessageBinary || !bytes.Equal(got, msg) {
				t.Fatalf("%d bytes: got %v %d bytes, %v", n, typ, len(got), err)
			}
		}
		if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 32<<20+1)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
			t.Fatalf("oversized message: %v", err)
		}
		c.CloseNow()
	}
}

// With -tls the server speaks wss:// on its own certificate and offers
// HTTP/2, which RFC 8441 clients need.
func TestEchoServerTLS(t *testing.T) {
	cert, err := selfSigned()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve(ln, &cert, false)
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)

	tc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("ALPN chose %q, want h2", p)
	}
	tc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://"+ln.Addr().String()+"/", &websocket.DialOptions{TLSConfig: &tls.Config{RootCAs: roots}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("over TLS")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "over TLS" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
}
