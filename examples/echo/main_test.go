package main

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// The echo server echoes text and binary, compressed or not, up to its
// 32 MiB limit, and refuses a larger message with status 1009.
func TestEchoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve(ln)
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
