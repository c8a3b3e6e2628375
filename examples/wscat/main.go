// Command wscat is a command-line WebSocket client: each line of standard
// input is sent as a text message, and each message received is printed on
// standard output.
//
//	go run ./examples/wscat ws://127.0.0.1:9001/
//	go run ./examples/wscat -send '{"op":"status"}' -wait 2s wss://example.com/ws
//
// Standard output carries only the messages, text as it is and binary in
// hex (or appended to the file -binary-out names), so that it can be piped
// on; what happens to the connection is reported on standard error. End of
// input, Ctrl-C and the end of -wait all close the connection with the
// closing handshake, and report the status the server closed with.
//
// The exit status says how the connection ended: 0 for a normal closure,
// 1 when the handshake was refused or the connection failed, 2 for bad
// usage, and 3 when the server closed with a status other than 1000.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/duplex-go/websocket"
)

// Exit statuses.
const (
	exitOK         = 0
	exitFailed     = 1
	exitUsage      = 2
	exitPeerClosed = 3
)

const (
	dialTimeout     = 30 * time.Second
	readLimit       = 64 << 20 // someone at a terminal wants to see big messages too
	maxInputLine    = 16 << 20
	defaultSendWait = time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, let a second one kill us at once, in
		// case the server never answers the close.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// options are the parsed command line.
type options struct {
	url          string
	header       http.Header
	subprotocols []string
	compress     bool
	insecure     bool
	send         *string // nil without -send
	wait         time.Duration
	showPing     bool
	ping         time.Duration
	binaryOut    string
}

// errReported is a usage error that has been printed already.
var errReported = errors.New("usage error already reported")

// parseArgs parses the command line. Flags may come before or after the
// URL. It returns a usage error, or flag.ErrHelp for -h.
func parseArgs(args []string, stderr io.Writer) (*options, error) {
	o := &options{header: make(http.Header)}
	fs := flag.NewFlagSet("wscat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: wscat [flags] ws://host[:port]/path   (or wss://)")
		fs.PrintDefaults()
	}
	fs.Var(headerFlag(o.header), "H", "add a handshake header `\"Name: value\"` (repeatable)")
	fs.Var((*listFlag)(&o.subprotocols), "subprotocol", "offer the subprotocol `name`s, most preferred first (repeatable or comma-separated)")
	origin := fs.String("origin", "", "send an Origin header, as a browser page at `URL` would")
	fs.BoolVar(&o.compress, "compress", false, "offer permessage-deflate compression")
	fs.BoolVar(&o.insecure, "insecure", false, "skip TLS certificate verification (wss)")
	send := fs.String("send", "", "send the text message `MSG` instead of reading standard input, print replies for -wait, then close")
	fs.DurationVar(&o.wait, "wait", defaultSendWait, "with -send, print replies for `DUR` before closing")
	fs.BoolVar(&o.showPing, "show-ping", false, "report the pings and pongs the server sends")
	fs.DurationVar(&o.ping, "ping", 0, "send a ping every `DUR` and report the round trip")
	fs.StringVar(&o.binaryOut, "binary-out", "", "append binary messages to `FILE` instead of printing them in hex")

	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if !errors.Is(err, flag.ErrHelp) {
				err = errReported // fs has printed it, and the usage
			}
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["send"] {
		o.send = send
	}
	if *origin != "" {
		o.header.Set("Origin", *origin)
	}
	switch {
	case len(positional) != 1:
		fs.Usage()
		return nil, errors.New("want exactly one URL")
	case set["wait"] && o.send == nil:
		return nil, errors.New("-wait applies to -send only")
	case o.wait < 0 || o.ping < 0:
		return nil, errors.New("durations must not be negative")
	}
	u, err := url.Parse(positional[0])
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("%q is not a ws:// or wss:// URL", positional[0])
	}
	o.url = positional[0]
	return o, nil
}

// headerFlag adds "Name: value" flags to a header.
type headerFlag http.Header

func (h headerFlag) String() string { return "" }

func (h headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") {
		return errors.New(`want "Name: value"`)
	}
	http.Header(h).Add(name, strings.TrimSpace(value))
	return nil
}

// listFlag collects values given either as repeated flags or separated
// by commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// console serializes output from the goroutines that read, ping and
// report, so that lines never interleave.
type console struct {
	mu          sync.Mutex
	out, errOut io.Writer
}

func (c *console) print(line []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out.Write(append(line, '\n'))
}

func (c *console) report(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.errOut, "wscat: "+format+"\n", args...)
}

// run is the whole command: it returns the exit status. ctx ending
// (SIGINT) closes the connection as end of input does.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	con := &console{out: stdout, errOut: stderr}
	if err != nil {
		if err != errReported {
			con.report("%v", err)
		}
		return exitUsage
	}
	var binOut io.Writer
	if o.binaryOut != "" {
		f, err := os.OpenFile(o.binaryOut, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			con.report("%v", err)
			return exitUsage
		}
		defer f.Close()
		binOut = f
	}

	c, err := dial(ctx, o, con)
	if err != nil {
		return exitFailed
	}
	defer c.CloseNow()

	// Writes and pings use a context of their own: an interrupt must not
	// cut a message short, which would fail the connection instead of
	// closing it.
	bg, stop := context.WithCancel(context.Background())
	defer stop()

	// The reader runs until the connection ends, on every path: the
	// server's answer to our Close frame arrives through it.
	readDone := make(chan error, 1)
	go func() { readDone <- receive(c, con, binOut) }()

	if o.ping > 0 {
		go pingEvery(bg, c, o.ping, con)
	}
	inputDone := make(chan error, 1)
	if o.send != nil {
		go func() { inputDone <- sendAndWait(bg, c, *o.send, o.wait) }()
	} else {
		go func() { inputDone <- sendLines(bg, c, stdin, con) }()
	}

	select {
	case err := <-readDone:
		return ended(con, err, false)
	case <-ctx.Done():
	case err := <-inputDone:
		if err != nil {
			con.report("%v", err)
		}
	}
	// Close reads (and discards) messages itself if our reader is not
	// inside a read at that instant. A ping round trip first puts it
	// there, waiting for its next frame: pongs come back in order with
	// the messages, so when one arrives the server has seen all we sent,
	// and the replies it sent before it are printed.
	pctx, cancel := context.WithTimeout(bg, time.Second)
	c.Ping(pctx)
	cancel()
	closeErr := c.Close(websocket.StatusNormalClosure, "")
	err = <-readDone
	if closeErr != nil && !errors.As(err, new(websocket.CloseError)) {
		err = closeErr // says more than "connection closed"
	}
	return ended(con, err, true)
}

// dial opens the connection and reports how it went.
func dial(ctx context.Context, o *options, con *console) (*websocket.Conn, error) {
	opts := &websocket.DialOptions{HTTPHeader: o.header, Subprotocols: o.subprotocols}
	if o.compress {
		opts.Compression = &websocket.CompressionOptions{}
	}
	if o.insecure {
		opts.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, o.url, opts)
	if err != nil {
		con.report("%v", err)
		var he *websocket.HandshakeError
		if errors.As(err, &he) && he.Response != nil {
			// Servers explain a refusal in the body.
			body, _ := io.ReadAll(he.Response.Body)
			if s := strings.TrimSpace(string(body)); s != "" {
				con.report("server said: %s", s)
			}
		}
		return nil, err
	}
	c.SetReadLimit(readLimit)
	if o.showPing {
		c.OnPing(func(p []byte) { con.report("ping received: %q", p) })
		c.OnPong(func(p []byte) { con.report("pong received: %q", p) })
	}
	msg := "connected to " + o.url
	if p := c.Subprotocol(); p != "" {
		msg += fmt.Sprintf(", subprotocol %q", p)
	}
	if strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
		msg += ", permessage-deflate"
	}
	con.report("%s", msg)
	return c, nil
}

// receive prints messages until the connection ends, and returns how it
// ended.
func receive(c *websocket.Conn, con *console, binOut io.Writer) error {
	for {
		typ, msg, err := c.Read(context.Background())
		if err != nil {
			return err
		}
		switch {
		case typ == websocket.MessageText:
			con.print(msg)
		case binOut != nil:
			if _, err := binOut.Write(msg); err != nil {
				con.report("%v", err)
			}
		default:
			con.print([]byte(hex.EncodeToString(msg)))
		}
	}
}

// sendLines sends each line of input as a text message until end of input.
func sendLines(ctx context.Context, c *websocket.Conn, in io.Reader, con *console) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(nil, maxInputLine)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if !utf8.ValidString(line) {
			// The server would fail the connection with 1007.
			con.report("line is not valid UTF-8, not sent")
			continue
		}
		if err := c.Write(ctx, websocket.MessageText, []byte(line)); err != nil {
			return err
		}
	}
	return sc.Err()
}

// sendAndWait sends one message and waits for replies to it.
func sendAndWait(ctx context.Context, c *websocket.Conn, msg string, wait time.Duration) error {
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}

// pingEvery pings the server every interval and reports the round trip. A
// pong slower than the interval is reported as missing.
func pingEvery(ctx context.Context, c *websocket.Conn, interval time.Duration, con *console) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		pctx, cancel := context.WithTimeout(ctx, interval)
		start := time.Now()
		err := c.Ping(pctx)
		cancel()
		switch {
		case err == nil:
			con.report("pong after %v", time.Since(start).Round(time.Microsecond))
		case errors.Is(err, net.ErrClosed) || ctx.Err() != nil:
			return
		default:
			con.report("no pong within %v", interval)
		}
	}
}

// ended reports how the connection ended, given what the reader returned,
// and returns the exit status.
func ended(con *console, err error, weClosed bool) int {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		con.report("%v", err)
		return exitFailed
	}
	who := "server closed the connection"
	if weClosed {
		who = "closed"
	}
	if ce.Reason == "" {
		con.report("%s: status %v", who, ce.Code)
	} else {
		con.report("%s: status %v, reason %q", who, ce.Code, ce.Reason)
	}
	// A Close frame without a status (1005) ends the connection as
	// normally as 1000 does.
	if ce.Code == websocket.StatusNormalClosure || ce.Code == websocket.StatusNoStatusRcvd {
		return exitOK
	}
	return exitPeerClosed
}
