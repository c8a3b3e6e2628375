// Command autobahn is the server and the client that the Autobahn|Testsuite
// drives to certify this package against RFC 6455 and RFC 7692.
//
// In server mode it is the echo server that the suite's fuzzingclient
// attacks:
//
//	go run ./examples/autobahn server -addr 127.0.0.1:9001
//
// It serves one endpoint per API path, so that the suite certifies each of
// them: "/" echoes whole messages ([websocket.Conn.Read] and
// [websocket.Conn.Write]) and "/stream" streams each message back as it
// arrives ([websocket.Conn.Reader] and [websocket.Conn.Writer]).
//
// In client mode it is the client that the suite's fuzzingserver tests:
//
//	go run ./examples/autobahn client -url ws://127.0.0.1:9001 -agent duplex
//
// It asks the fuzzingserver how many cases there are, runs each of them (or
// those -cases lists) by echoing every message until the server closes, and
// asks the server to write its report.
//
// Both modes accept messages up to 32 MiB, as the suite's largest are
// 16 MiB, and use permessage-deflate when the peer agrees to it. See
// README.md for running the suite itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/duplex-go/websocket"
)

// readLimit admits the suite's 16 MiB messages with room to spare.
const readLimit = 32 << 20

// fragmentLimit admits the suite's 4 MiB messages in 64-byte fragments
// (cases 9.3.1 and 9.4.1) and more.
const fragmentLimit = readLimit / 64

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	switch mode, args := os.Args[1], os.Args[2:]; mode {
	case "server":
		fs := flag.NewFlagSet("server", flag.ExitOnError)
		addr := fs.String("addr", "127.0.0.1:9001", "address to listen on")
		fs.Parse(args)
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("autobahn echo server on ws://%s/ (whole messages) and ws://%[1]s/stream (streamed)\n", ln.Addr())
		log.Fatal(serve(ln))
	case "client":
		fs := flag.NewFlagSet("client", flag.ExitOnError)
		base := fs.String("url", "ws://127.0.0.1:9001", "URL of the fuzzingserver")
		agent := fs.String("agent", "duplex", "agent name the reports are filed under")
		list := fs.String("cases", "", "cases to run, by number, such as 1-16,300 (default all)")
		fs.Parse(args)
		cases, err := parseCases(*list)
		if err != nil {
			fmt.Fprintln(os.Stderr, "autobahn:", err)
			os.Exit(2)
		}
		if err := runClient(ctx, os.Stdout, *base, *agent, cases); err != nil {
			log.Fatal(err)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: autobahn server [-addr host:port]\n       autobahn client [-url ws://host:port] [-agent name] [-cases list]")
	os.Exit(2)
}

// serve runs the echo server on ln until it fails.
func serve(ln net.Listener) error {
	srv := &http.Server{
		Handler: newServer(),
		// Bound how long a client may take to send its handshake; an
		// upgraded connection is no longer subject to it.
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	return srv.Serve(ln)
}

// newServer returns the handler for server mode: "/stream" streams, and
// every other path echoes whole messages.
func newServer() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if c := accept(w, r); c != nil {
			defer c.CloseNow()
			logEnd(c, echoMessages(c))
		}
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		if c := accept(w, r); c != nil {
			defer c.CloseNow()
			logEnd(c, echoStreams(c))
		}
	})
	return mux
}

// accept upgrades with the settings both endpoints share. The origin check
// stays on: the suite sends no Origin header, and a certified server should
// be the one people deploy.
func accept(w http.ResponseWriter, r *http.Request) *websocket.Conn {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Compression: &websocket.CompressionOptions{},
	})
	if err != nil {
		log.Printf("%s: %v", r.RemoteAddr, err)
		return nil
	}
	c.SetReadLimit(readLimit)
	c.SetFragmentLimit(fragmentLimit)
	return c
}

// logEnd logs how a connection ended unless the peer closed it: most of the
// suite's cases end in a protocol error on purpose, and the log shows which.
func logEnd(c *websocket.Conn, err error) {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		log.Printf("%s: %v", c.RemoteAddr(), err)
	}
}

// echoMessages echoes whole messages until the connection ends. The suite
// reads while it writes, so holding a whole message before echoing it
// cannot deadlock.
func echoMessages(c *websocket.Conn) error {
	ctx := context.Background()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return err
		}
	}
}

// echoStreams echoes each message through a fixed buffer, fragment by
// fragment as it arrives, so a message is being written back before it has
// been read to its end: memory stays fixed whatever the message size. The
// price is that a text message found to be invalid UTF-8 part way has had
// its valid start echoed by the time the connection fails with 1007.
func echoStreams(c *websocket.Conn) error {
	ctx := context.Background()
	buf := make([]byte, 32<<10)
	for {
		typ, r, err := c.Reader(ctx)
		if err != nil {
			return err
		}
		w, err := c.Writer(ctx, typ)
		if err != nil {
			return err
		}
		if _, err := io.CopyBuffer(w, r, buf); err != nil {
			w.Close()
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
}

// runClient runs the fuzzingserver's test cases against this package's
// client: all of them if cases is empty, else those listed. It reports each
// case's outcome on out. A case ending in a protocol error is an outcome
// for the report to judge, not a failure of the run; the run fails only
// when the fuzzingserver cannot be reached or misbehaves.
func runClient(ctx context.Context, out io.Writer, base, agent string, cases []int) error {
	base = strings.TrimSuffix(base, "/")
	count, err := caseCount(ctx, base)
	if err != nil {
		return err
	}
	if len(cases) == 0 {
		for n := 1; n <= count; n++ {
			cases = append(cases, n)
		}
	}
	for _, n := range cases {
		if n < 1 || n > count {
			return fmt.Errorf("case %d does not exist: the server has cases 1 to %d", n, count)
		}
	}
	q := "agent=" + url.QueryEscape(agent)
	for i, n := range cases {
		if err := ctx.Err(); err != nil {
			return err
		}
		outcome := "timed out"
		err := runCase(ctx, fmt.Sprintf("%s/runCase?case=%d&%s", base, n, q))
		if code := websocket.CloseStatus(err); code >= 0 {
			outcome = code.String()
		} else if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("case %d: %w", n, err)
		}
		fmt.Fprintf(out, "case %d (%d of %d): %s\n", n, i+1, len(cases), outcome)
	}
	return updateReports(ctx, base+"/updateReports?"+q)
}

// dial connects to the fuzzingserver the way every case expects.
func dial(ctx context.Context, u string) (*websocket.Conn, error) {
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		Compression: &websocket.CompressionOptions{},
	})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(readLimit)
	c.SetFragmentLimit(fragmentLimit)
	return c, nil
}

// caseCount asks the fuzzingserver how many cases it has: it answers with
// one text message.
func caseCount(ctx context.Context, base string) (int, error) {
	c, err := dial(ctx, base+"/getCaseCount")
	if err != nil {
		return 0, err
	}
	defer c.CloseNow()
	_, msg, err := c.Read(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the case count: %w", err)
	}
	n, err := strconv.Atoi(string(msg))
	if err != nil {
		return 0, fmt.Errorf("case count %q is not a number", msg)
	}
	c.Close(websocket.StatusNormalClosure, "")
	return n, nil
}

// caseTimeout bounds one case. The suite's slowest cases (9.x, megabytes
// of small frames) take seconds; a case still running after this long has
// hung.
const caseTimeout = 5 * time.Minute

// runCase echoes every message of one case until the connection ends, and
// returns how it ended.
func runCase(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, caseTimeout)
	defer cancel()
	c, err := dial(ctx, u)
	if err != nil {
		return err
	}
	defer c.CloseNow()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return err
		}
	}
}

// updateReports asks the fuzzingserver to write its reports. It closes the
// connection when they are written, so read until then.
func updateReports(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, caseTimeout)
	defer cancel()
	c, err := dial(ctx, u)
	if err != nil {
		return err
	}
	defer c.CloseNow()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			if websocket.CloseStatus(err) < 0 {
				return fmt.Errorf("updating the reports: %w", err)
			}
			return nil
		}
	}
}

// parseCases parses a list of case numbers and ranges: "1-16,300".
func parseCases(s string) ([]int, error) {
	var cases []int
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err1 := strconv.Atoi(lo)
		last, err2 := first, error(nil)
		if isRange {
			last, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || first < 1 || last < first {
			return nil, fmt.Errorf("bad case list %q: want numbers and ranges such as 1-16,300", s)
		}
		for n := first; n <= last; n++ {
			cases = append(cases, n)
		}
	}
	return cases, nil
}
