// Command broadcast pushes a price tick to every connected client: a page
// with a live table of a few symbols, and a load mode that measures how
// fast the ticks fan out.
//
//	go run ./examples/broadcast -interval 100ms
//
// serves the page at http://127.0.0.1:8080 and the ticks at /ws.
//
//	go run ./examples/broadcast -clients 1000 -duration 10s
//
// starts the server in-process (or, with -url ws://host:port/ws, uses a
// running one), connects 1000 clients, and reports the messages per second
// they received and the fan-out latency percentiles: each tick carries the
// time the server sent it.
//
// The server only writes. Each connection runs [websocket.Conn.CloseRead],
// so pings and the client's Close frame are answered while nothing is read.
// A tick is encoded and framed once ([websocket.NewPreparedMessage]) and
// written to every client ([websocket.Conn.WritePrepared]) from the client's
// own bounded queue by its own goroutine; a client whose queue is full is
// too slow, and is dropped with status 1008 rather than waited for. When the
// server stops, a [websocket.Group] says goodbye to every client with
// status 1001.
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
	"strings"
	"time"
)

//go:embed static
var static embed.FS

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between ticks")
	clients := flag.Int("clients", 0, "load mode: connect this many clients and report what they receive")
	url := flag.String("url", "", "load mode: the server's ws:// URL (default: start one in-process on a free port)")
	duration := flag.Duration("duration", 10*time.Second, "load mode: how long to measure")
	flag.Parse()
	if *interval <= 0 {
		log.Fatal("-interval must be positive")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *clients > 0 {
		if err := load(ctx, *url, *clients, *duration, *interval); err != nil {
			log.Fatal(err)
		}
		return
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ticks every %v on http://%s/\n", *interval, ln.Addr())
	if err := serve(ctx, ln, newServer(*interval, defaultQueueSize)); err != nil {
		log.Fatal(err)
	}
}

// load runs the load mode against url, or against a server of its own.
func load(ctx context.Context, url string, clients int, duration, interval time.Duration) error {
	if url == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srvCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- serve(srvCtx, ln, newServer(interval, defaultQueueSize)) }()
		defer func() {
			cancel()
			<-done
		}()
		url = "ws://" + ln.Addr().String() + "/ws"
		fmt.Printf("in-process server ticking every %v at %s\n", interval, url)
	} else if !strings.HasPrefix(url, "ws://") && !strings.HasPrefix(url, "wss://") {
		return fmt.Errorf("-url %q is not a ws:// or wss:// URL", url)
	}
	res, err := runLoad(ctx, url, clients, duration)
	if err != nil {
		return err
	}
	fmt.Print(res)
	return nil
}

// serve runs s on ln until ctx is done, then says goodbye to its clients.
func serve(ctx context.Context, ln net.Listener, s *server) error {
	srv := &http.Server{
		Handler: newHandler(s),
		// Bound how long a client may take to send its request headers;
		// the WebSocket connection itself has no such limit once upgraded.
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	tickCtx, stopTicks := context.WithCancel(context.Background())
	ticking := make(chan struct{})
	go func() {
		defer close(ticking)
		s.run(tickCtx)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	var err error
	select {
	case err = <-serveErr:
	case <-ctx.Done():
	}
	stopTicks()
	<-ticking
	// Server.Shutdown stops accepting and waits for page requests in
	// flight, but it neither closes nor waits for WebSocket connections,
	// which net/http no longer tracks once upgraded: the Group closes
	// them with 1001 and waits for their closing handshakes.
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutCtx)
	if cerr := s.conns.Shutdown(shutCtx); err == nil {
		err = cerr
	}
	return err
}

// newHandler routes the page, its assets and the WebSocket endpoint.
func newHandler(s *server) http.Handler {
	assets, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	files := securityHeaders(http.FileServerFS(assets))
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", files) // index.html
	mux.Handle("GET /static/", http.StripPrefix("/static/", files))
	mux.Handle("GET /ws", s)
	return mux
}

// securityHeaders keeps the page's own script the only one that runs.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}
