// Command echo is a WebSocket echo server: every message it receives is
// sent back with its type. It is the server that interoperability and
// conformance suites (Autobahn's fuzzingclient among them) are pointed at.
//
//	go run ./examples/echo -addr 127.0.0.1:9001
//
// It accepts messages up to 32 MiB (Autobahn sends 16 MiB ones; larger
// messages are refused with status 1009), negotiates permessage-deflate
// when the client offers it, and otherwise keeps the library's defaults,
// the same-origin check included.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/duplex-go/websocket"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "address to listen on")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("echo server listening on ws://%s/\n", ln.Addr())
	log.Fatal(serve(ln))
}

// serve runs the echo server on ln until it fails.
func serve(ln net.Listener) error {
	srv := &http.Server{
		Handler: http.HandlerFunc(echo),
		// Bound how long a client may take to send its handshake; the
		// WebSocket connection itself has no such limit once upgraded.
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	return srv.Serve(ln)
}

// echo upgrades the request and echoes messages until the connection ends.
func echo(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Compression: &websocket.CompressionOptions{},
	})
	if err != nil {
		log.Printf("%s: %v", r.RemoteAddr, err)
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(32 << 20)
	ctx := context.Background()
	for {
		// Whole messages, not streamed: a client that writes a large
		// message before it reads would otherwise fill both TCP buffers
		// and wait forever for us to read on.
		typ, msg, err := c.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) {
				log.Printf("%s: %v", c.RemoteAddr(), err)
			}
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}
