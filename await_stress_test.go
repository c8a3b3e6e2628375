//go:build linux

package websocket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Stress for AwaitMessage beyond await_test.go: connections served the way
// a busy server would serve them, and the cases where the await path once
// fell short of what a Read loop does (a replaced function called with
// nothing to read, a message Close held for nobody, keepalive giving up
// behind a stuck write).

// awaitStressSizes are the message sizes the stress test cycles through:
// the boundaries of the frame length encodings (§5.2), of the read buffer
// and of a streamed frame, and more than one of those.
var awaitStressSizes = []int{0, 1, 125, 126, 127, 128, 4095, 16 << 10, 16<<10 + 1, 65535, 65536, 100_000}

// awaitStressMsg returns message i of a connection: text or binary, of the
// size the cycle says, with its number up front.
func awaitStressMsg(rng *rand.Rand, i int) (MessageType, []byte) {
	size := awaitStressSizes[i%len(awaitStressSizes)]
	if rng.Intn(2) == 0 {
		size = rng.Intn(300)
	}
	head := fmt.Sprintf("%d:", i)
	b := make([]byte, max(size, len(head)))
	copy(b, head)
	for j := len(head); j < len(b); j++ {
		b[j] = byte('a' + (i+j)%26)
	}
	typ := MessageText
	if i%3 == 0 {
		typ = MessageBinary
	}
	return typ, b
}

// TestAwaitStress serves connections with AwaitMessage as a busy server
// would, half of them compressed: the client pipelines messages of every
// boundary size, whole and in fragments with its pings slipping between
// them, while the server's function reads each message with Reader in
// pieces of random size (now and then slowly), echoes it and awaits the
// next, and another server goroutine pushes messages of its own and pings
// the client, whose pongs reach the server only through the await path
// and the function's reads. Every echo and push arrives whole and in
// order, every ping is answered, the function runs once per message plus
// once for the end and never twice at once, and the connection closes
// cleanly from the side the case picks. Afterwards no goroutine is left
// serving a connection.
func TestAwaitStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test: skipped with -short")
	}
	const (
		messages = 48 // the client sends, the server echoes
		pushes   = 16 // the server sends unasked
		pings    = 4  // each side sends while the messages flow
	)
	conns := 8
	if raceEnabled {
		conns = 4
	}
	type serverEnd struct {
		calls int64 // how often the function ran
		err   error // how the connection ended, or what went wrong
	}
	ends := make(chan serverEnd, conns)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		opts := &AcceptOptions{}
		if q.Get("compress") == "1" {
			opts.Compression = &CompressionOptions{}
		}
		c, err := Accept(w, r, opts)
		if err != nil {
			ends <- serverEnd{0, err}
			return
		}
		seed, _ := strconv.ParseInt(q.Get("seed"), 10, 64)
		rng := rand.New(rand.NewSource(seed)) // the function's alone
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var (
			calls    atomic.Int64
			running  atomic.Bool
			echoed   = make(chan struct{}) // closed when every message is echoed
			endOnce  sync.Once
			readPart = make([]byte, 4096)
			serve    func()
		)
		end := func(err error) {
			endOnce.Do(func() {
				ends <- serverEnd{calls.Load(), err}
				cancel()
				c.CloseNow()
			})
		}
		serve = func() {
			if !running.CompareAndSwap(false, true) {
				end(errors.New("AwaitMessage called the function while it was still running"))
				return
			}
			defer running.Store(false)
			n := calls.Add(1)
			if rng.Intn(8) == 0 {
				time.Sleep(time.Millisecond) // a slow reader
			}
			typ, rd, err := c.Reader(ctx)
			if err != nil {
				end(err)
				return
			}
			var msg []byte
			for {
				k, err := rd.Read(readPart[:1+rng.Intn(len(readPart))])
				msg = append(msg, readPart[:k]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					end(err)
					return
				}
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				end(err)
				return
			}
			if n == messages {
				close(echoed)
			}
			c.AwaitMessage(serve)
		}
		c.AwaitMessage(serve)
		// The pusher ends once it has pushed and, if the server is to
		// close, closed; the handler returns at once. No goroutine is
		// left for the connection while it idles.
		go func() {
			for i := 0; i < pushes; i++ {
				if i%(pushes/pings) == 0 {
					if err := c.Ping(ctx); err != nil {
						end(fmt.Errorf("server's ping: %w", err))
						return
					}
				}
				if err := c.Write(ctx, MessageText, []byte(fmt.Sprint("push:", i))); err != nil {
					end(fmt.Errorf("push %d: %w", i, err))
					return
				}
			}
			if q.Get("closer") != "server" {
				return
			}
			select {
			case <-echoed:
			case <-ctx.Done():
				return
			}
			if err := c.Close(StatusNormalClosure, ""); err != nil {
				end(fmt.Errorf("server's Close: %w", err))
			}
		}()
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := 0; i < conns; i++ {
		closer := [2]string{"client", "server"}[i%2]
		compress := i/2%2 == 1
		q := fmt.Sprintf("?seed=%d&closer=%s&compress=%d", i, closer, b2i(compress))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := awaitStressClient(url+q, closer, compress, int64(i), messages, pushes, pings); err != nil {
				errs <- fmt.Errorf("connection %d (%s closes, compress=%v): %w", i, closer, compress, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	timer := time.NewTimer(time.Minute)
	defer timer.Stop()
	for i := 0; i < conns; i++ {
		select {
		case end := <-ends:
			if CloseStatus(end.err) != StatusNormalClosure {
				t.Errorf("a server side ended with %v, want the client's Close or the answer to its own", end.err)
			}
			if end.calls != messages+1 {
				t.Errorf("a server's function ran %d times for %d messages and the end", end.calls, messages)
			}
		case <-timer.C:
			t.Fatalf("%d server sides never ended", conns-i)
		}
	}
	loadAwaitSettled(t)
}

// awaitStressClient is the client side of TestAwaitStress.
func awaitStressClient(url, closer string, compress bool, seed int64, messages, pushes, pings int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := &DialOptions{}
	if compress {
		opts.Compression = &CompressionOptions{}
	}
	c, _, err := Dial(ctx, url, opts)
	if err != nil {
		return err
	}
	defer c.CloseNow()
	rng := rand.New(rand.NewSource(seed))
	type message struct {
		typ MessageType
		msg []byte
	}
	want := make([]message, messages)
	for i := range want {
		want[i].typ, want[i].msg = awaitStressMsg(rng, i)
	}

	// The reader tells echoes (which start with their number) from
	// pushes, checks both, says when all are in, and reports how reading
	// ended: with the server's Close when it closes, or with the answer
	// to our own. A wrong message ends the connection, and with it the
	// writes and pings, at once.
	allIn := make(chan struct{})
	readEnd := make(chan error, 1)
	go func() {
		echoes, pushesIn := 0, 0
		wrong := func(err error) {
			readEnd <- err
			c.CloseNow()
		}
		for {
			typ, got, err := c.Read(ctx)
			if err != nil {
				if echoes != messages || pushesIn != pushes {
					err = fmt.Errorf("read %d echoes and %d pushes, then %w", echoes, pushesIn, err)
				}
				readEnd <- err
				return
			}
			if p, ok := strings.CutPrefix(string(got), "push:"); ok {
				if p != fmt.Sprint(pushesIn) {
					wrong(fmt.Errorf("push %d arrived as %q", pushesIn, got))
					return
				}
				pushesIn++
			} else {
				if echoes == messages {
					wrong(fmt.Errorf("an echo too many: %q", got[:min(len(got), 16)]))
					return
				}
				if w := want[echoes]; typ != w.typ || !bytes.Equal(got, w.msg) {
					wrong(fmt.Errorf("echo %d: %v of %d bytes, want %v of %d", echoes, typ, len(got), w.typ, len(w.msg)))
					return
				}
				echoes++
			}
			if echoes == messages && pushesIn == pushes {
				close(allIn)
			}
		}
	}()
	// failed reports err, or what the reader found wrong first.
	failed := func(err error) error {
		select {
		case rerr := <-readEnd:
			return rerr
		default:
			return err
		}
	}

	pinged := make(chan error, 1)
	go func() {
		for i := 0; i < pings; i++ {
			if err := c.Ping(ctx); err != nil {
				pinged <- fmt.Errorf("client's ping: %w", err)
				return
			}
		}
		pinged <- nil
	}()
	for i, m := range want {
		if i == len(want)-1 {
			// The pings are answered before the last message, after
			// which the server may close: a ping that crossed its Close
			// frame would go unanswered.
			if err := <-pinged; err != nil {
				return failed(err)
			}
		}
		if rng.Intn(2) == 0 {
			if err := c.Write(ctx, m.typ, m.msg); err != nil {
				return failed(fmt.Errorf("write %d: %w", i, err))
			}
			continue
		}
		w, err := c.Writer(ctx, m.typ)
		if err != nil {
			return failed(fmt.Errorf("writer %d: %w", i, err))
		}
		for rest := m.msg; len(rest) > 0 && err == nil; {
			k := min(len(rest), 1+rng.Intn(20_000))
			_, err = w.Write(rest[:k])
			rest = rest[k:]
		}
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return failed(fmt.Errorf("streamed write %d: %w", i, err))
		}
	}
	if closer == "client" {
		select {
		case <-allIn:
		case err := <-readEnd:
			return fmt.Errorf("reading ended early: %w", err)
		}
		if err := c.Close(StatusNormalClosure, ""); err != nil {
			return failed(fmt.Errorf("Close: %w", err))
		}
	}
	if err := <-readEnd; CloseStatus(err) != StatusNormalClosure {
		return fmt.Errorf("read: %w", err)
	}
	return nil
}

// AwaitMessage called again before the function ran replaces the
// function, and the replacement, too, is called once a message has begun
// to arrive: not at once, with nothing to read, where its read would wait
// on a goroutine (or fail, with a short context).
func TestAwaitMessageReplacedBeforeItRuns(t *testing.T) {
	server, client := pipePair(t, extensions{}, extensions{})
	// Holding the read lock keeps the first look at the connection from
	// happening until the function has been replaced.
	_ = server.readLock.lock(context.Background(), nil)
	called := make(chan string, 2)
	server.AwaitMessage(func() { called <- "the first function" })
	server.AwaitMessage(func() {
		called <- "the replacement"
		_, msg, err := server.Read(context.Background())
		called <- fmt.Sprint(string(msg), err)
	})
	server.readLock.unlock()
	select {
	case got := <-called:
		t.Fatalf("%s ran before any message was sent", got)
	case <-time.After(100 * time.Millisecond):
	}
	if err := client.Write(context.Background(), MessageText, []byte("now")); err != nil {
		t.Fatal(err)
	}
	if got := awaitRecv(t, called); got != "the replacement" {
		t.Fatalf("%s ran; want the replacement", got)
	}
	if got := awaitRecv(t, called); got != "now<nil>" {
		t.Fatalf("the replacement read %q; want the message", got)
	}
}

// A message that Close reads on behalf of an application awaiting
// messages is handed over as to a Read loop between two reads: the
// application's function is called for it. Here the poller is held up
// (by another connection whose wake-up it is stuck in), so that only
// Close sees the message arrive, as happens when Close's read wins the
// race for the socket.
func TestAwaitMessageCloseHandsOver(t *testing.T) {
	blocker, blockerPeer := pipePair(t, extensions{}, extensions{})
	blocker.AwaitMessage(func() {})
	server, client := pipePair(t, extensions{}, extensions{})
	got := make(chan string, 4)
	var serve func()
	serve = func() {
		_, msg, err := server.Read(context.Background())
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(msg)
		server.AwaitMessage(serve)
	}
	server.AwaitMessage(serve)
	go readUntilError(client) // answers the Close
	for _, c := range []*Conn{blocker, server} {
		awaitUntilWatched(t, c)
	}
	// The poller, woken for the blocker, waits for the blocker's lock.
	a := blocker.await.Load()
	a.mu.Lock()
	if err := blockerPeer.Write(context.Background(), MessageText, []byte("wake")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := client.Write(context.Background(), MessageText, []byte("before Close")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the message is in the socket
	err := server.Close(StatusNormalClosure, "")
	a.mu.Unlock()
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	if first := awaitRecv(t, got); first != "before Close" {
		t.Fatalf("the awaiting function got %q first, want the message that came before Close", first)
	}
}

// awaitUntilWatched waits, a bounded while, until the poller watches c for
// the message it awaits.
func awaitUntilWatched(t *testing.T, c *Conn) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		a := c.await.Load()
		a.mu.Lock()
		watched := a.state == awaitWatched
		a.mu.Unlock()
		if watched {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection is not watched")
		}
	}
}

// awaitRecv receives from ch, failing the test if nothing comes within ten
// seconds.
func awaitRecv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatal("nothing came within ten seconds")
		panic("unreachable")
	}
}

// readUntilError reads c until a read fails.
func readUntilError(c *Conn) {
	for {
		if _, _, err := c.Read(context.Background()); err != nil {
			return
		}
	}
}

// Keepalive notices a peer that stopped reading, as one that vanished
// without closing does, even while a write to it is blocked: AwaitMessage's
// documentation names SetKeepAlive as the way to notice such a peer. The
// blocked write and the awaiting function are told the connection closed.
func TestAwaitMessageKeepAliveBlockedWriter(t *testing.T) {
	server, peer := tcpPair(t)
	defer peer.Close() // never reads, never closes
	c := newConn(server, true, nil, "", extensions{})
	defer c.CloseNow()
	c.SetKeepAlive(50*time.Millisecond, 30*time.Millisecond)
	told := make(chan error, 1)
	c.AwaitMessage(func() {
		_, _, err := c.Read(context.Background())
		told <- err
	})
	wrote := make(chan error, 1)
	go func() {
		big := make([]byte, 1<<20)
		for {
			if err := c.Write(context.Background(), MessageBinary, big); err != nil {
				wrote <- err
				return
			}
		}
	}()
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case err := <-wrote:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked write: %v, want net.ErrClosed", err)
		}
	case <-timer.C:
		t.Fatal("keepalive did not close a connection whose peer stopped reading")
	}
	if err := awaitRecv(t, told); !strings.Contains(fmt.Sprint(err), "keepalive") {
		t.Errorf("awaiting function's read: %v, want it to say keepalive", err)
	}
}
