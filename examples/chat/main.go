// Command chat serves a chat room: a page where people pick a name, see who
// joins and leaves, and send messages that everyone in the room sees in the
// same order. The page and its script are embedded in the binary.
//
//	go run ./examples/chat -addr 127.0.0.1:8080
//
// then open http://127.0.0.1:8080 in two browser windows.
//
// It shows the server side of a fan-out done right: each message is
// encoded and framed once ([websocket.NewPreparedMessage]) and written to
// every member ([websocket.Conn.WritePrepared]) by that member's own writer
// goroutine from a bounded queue, so a member too slow to keep up is
// disconnected with status 1008 instead of stalling the room. When the
// server stops, a [websocket.Group] says goodbye to every member with
// status 1001. Messages are
// JSON, limited to 4 KiB; names are limited to 24 characters; dead peers are
// found by keepalive pings; the library's same-origin check stays on.
package main

import (
	"context"
	"embed"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"
)

//go:embed static
var static embed.FS

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("chat room on http://%s/\n", ln.Addr())

	h := newHub(defaultQueueSize)
	srv := newServer(h)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	select {
	case err := <-serveErr:
		log.Fatal(err)
	case <-ctx.Done():
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx, srv, h); err != nil {
		log.Printf("chat: %v", err)
	}
}

// shutdown stops the server: it stops accepting connections and waits for
// page requests in flight, then closes the members' connections with 1001
// (going away) and waits for their closing handshakes, until ctx is done.
// Server.Shutdown alone would neither close nor wait for WebSocket
// connections, which net/http no longer tracks once upgraded.
func shutdown(ctx context.Context, srv *http.Server, h *hub) error {
	err := srv.Shutdown(ctx)
	if gerr := h.conns.Shutdown(ctx); err == nil {
		err = gerr
	}
	return err
}

// newServer returns the chat server: the page at /, its assets under
// /static/ and the room's WebSocket endpoint at /ws.
func newServer(h *hub) *http.Server {
	return &http.Server{
		Handler: newHandler(h),
		// Bound how long a client may take to send its request headers;
		// the WebSocket connection itself has no such limit once upgraded.
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// newHandler routes the page, its assets and the WebSocket endpoint.
func newHandler(h *hub) http.Handler {
	assets, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	files := securityHeaders(http.FileServerFS(assets))
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", files) // index.html
	mux.Handle("GET /static/", http.StripPrefix("/static/", files))
	mux.Handle("GET /ws", h)
	return mux
}

// securityHeaders adds headers that keep the page's script the only script
// that runs on it: even if user text were ever inserted as markup, the
// browser would not execute it.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}
