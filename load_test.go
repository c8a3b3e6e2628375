//go:build linux

package websocket

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Load and soak: thousands of connections at once, and connections cycled
// for a while with faults injected. Every message is accounted for, and
// goroutines and heap return to where they started once the connections
// are gone.

const (
	loadWriters   = 2  // writer goroutines on each side of a connection
	loadPerWriter = 10 // messages each writes
)

// loadFDs makes room, if it can, for n more open files by raising the soft
// RLIMIT_NOFILE towards the hard limit, and returns how many there is room
// for.
func loadFDs(n int) int {
	const reserve = 256 // the test binary's own files and sockets
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return n
	}
	if want := uint64(n + reserve); rl.Cur < want && rl.Cur < rl.Max {
		rl.Cur = min(want, rl.Max)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return max(0, min(n, int(rl.Cur)-reserve))
}

// loadSnapshot is the process's goroutines and live heap.
type loadSnapshot struct {
	goroutines int
	heap       uint64 // HeapInuse after a collection
	live       uint64 // HeapAlloc after a collection: the live objects alone
}

func (s loadSnapshot) String() string {
	return fmt.Sprintf("%d goroutines, %.1f MiB heap in use (%.1f MiB live)", s.goroutines, float64(s.heap)/(1<<20), float64(s.live)/(1<<20))
}

// loadMeasure collects garbage, twice so that sync.Pool's victim cache is
// emptied too, and measures. The goroutines that wait to serve the next
// awaited connection are not counted: a few of them stay for the process
// once AwaitMessage has been used, like its poller (which a test starts
// before it takes its baseline).
func loadMeasure() loadSnapshot {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return loadSnapshot{loadGoroutines(), ms.HeapInuse, ms.HeapAlloc}
}

// loadGoroutines counts goroutines but those that wait to serve the next
// awaited connection.
func loadGoroutines() int { return runtime.NumGoroutine() - int(idleWorkers.Load()) }

// loadWarm runs n goroutines at once and lets them end. The runtime never
// frees a goroutine's descriptor (a few hundred bytes of heap) but reuses
// it, so a test that is to run n goroutines warms up with this before it
// takes its baseline; otherwise the descriptors look like a leak.
func loadWarm(n int) {
	var wg sync.WaitGroup
	release := make(chan struct{})
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer wg.Done()
			<-release
		}()
	}
	close(release)
	wg.Wait()
}

// loadSettle waits, up to ten seconds, for the goroutines to come back to
// within slack of base, and measures.
func loadSettle(base loadSnapshot, slack int) loadSnapshot {
	deadline := time.Now().Add(10 * time.Second)
	for loadGoroutines() > base.goroutines+slack && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return loadMeasure()
}

// loadCheckSettled fails t if goroutines or heap did not come back near
// base.
func loadCheckSettled(t *testing.T, base, end loadSnapshot, heapSlack uint64) {
	t.Helper()
	if end.goroutines > base.goroutines+5 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d at the start, %d at the end\n%s", base.goroutines, end.goroutines, buf[:runtime.Stack(buf, true)])
	}
	if end.heap > base.heap+heapSlack {
		t.Errorf("heap in use: %.1f MiB at the start, %.1f MiB at the end; want at most %d MiB more",
			float64(base.heap)/(1<<20), float64(end.heap)/(1<<20), heapSlack>>20)
	}
}

// loadAwaitSettled waits, up to ten seconds, for every goroutine of
// AwaitMessage to be done serving connections, and fails t with the stacks
// of those that are not: a function that never returned, or an await path
// stuck on a connection. (A few goroutines wait to serve the next awaited
// connection; they are not serving one.)
func loadAwaitSettled(t *testing.T) {
	t.Helper()
	var stuck []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		stuck = stuck[:0]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "websocket.(*Conn).serveAwait") {
				stuck = append(stuck, g)
			}
		}
		if len(stuck) == 0 {
			return
		}
	}
	t.Errorf("%d goroutines still serve awaited connections after they closed; the first:\n%s", len(stuck), stuck[0])
}

// loadMsg formats message seq of writer w, padded to size bytes.
func loadMsg(w, seq, size int) []byte {
	head := strconv.Itoa(w) + ":" + strconv.Itoa(seq) + ":"
	b := make([]byte, max(size, len(head)))
	copy(b, head)
	for i := len(head); i < len(b); i++ {
		b[i] = byte('a' + (i+seq)%26)
	}
	return b
}

// loadParse checks a message made by loadMsg and returns its writer and
// sequence number.
func loadParse(msg []byte) (w, seq int, ok bool) {
	ws, rest, ok1 := strings.Cut(string(msg), ":")
	ss, _, ok2 := strings.Cut(rest, ":")
	w, err1 := strconv.Atoi(ws)
	seq, err2 := strconv.Atoi(ss)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || w < 0 || w >= loadWriters {
		return 0, 0, false
	}
	return w, seq, bytes.Equal(msg, loadMsg(w, seq, len(msg)))
}

// loadResult is what one side of a load connection did.
type loadResult struct {
	sent     int   // messages it wrote successfully
	received int   // messages it read
	err      error // what went wrong, if anything
}

// loadReads are the ways a side of a load connection reads: a goroutine
// in a Read loop; a function that AwaitMessage calls for each message; and
// such a function that dawdles before every fourth message, a slow reader.
var loadReads = [...]string{"loop", "await", "await-slow"}

// loadSide runs one end of a load connection. After jitter, loadWriters goroutines write
// loadPerWriter messages each, whole or streamed, while a reader (one of
// loadReads) checks the peer's arrive in order. The closing side then calls
// Close a random delay after its writers are done, and, if waitAll, only
// once all of the peer's messages are in; the other side reads until the
// CloseError.
func loadSide(c *Conn, read string, closer, waitAll bool, jitter, delay time.Duration, seed int64) loadResult {
	defer c.CloseNow()
	time.Sleep(jitter)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := loadWriters * loadPerWriter
	allIn := make(chan struct{})
	type readEnd struct {
		n   int
		err error
	}
	readDone := make(chan readEnd, 2) // 2: a doubly called function reports too
	var next [loadWriters]int
	n := 0
	// readOne reads and checks one message, and reports whether to go on.
	// Only one reader runs at a time: the Read loop, or the function
	// AwaitMessage calls.
	readOne := func() bool {
		_, msg, err := c.Read(ctx)
		if err != nil {
			readDone <- readEnd{n, err}
			return false
		}
		w, seq, ok := loadParse(msg)
		if !ok || seq != next[w] {
			readDone <- readEnd{n, fmt.Errorf("message %d (%q…) is corrupted or out of order", n, msg[:min(len(msg), 16)])}
			c.CloseNow()
			return false
		}
		next[w]++
		if n++; n == full {
			close(allIn)
		}
		return true
	}
	switch read {
	case "loop":
		go func() {
			for readOne() {
			}
		}()
	case "await", "await-slow":
		var running atomic.Bool
		var serve func()
		serve = func() {
			if !running.CompareAndSwap(false, true) {
				readDone <- readEnd{n, errors.New("AwaitMessage called the function while it was still running")}
				return
			}
			if read == "await-slow" && n%4 == 0 {
				time.Sleep(time.Millisecond)
			}
			more := readOne()
			running.Store(false)
			if more {
				c.AwaitMessage(serve)
			}
		}
		c.AwaitMessage(serve)
	default:
		panic("unknown load read " + read)
	}
	var sent atomic.Int64
	writeErrs := make([]error, loadWriters)
	var wg sync.WaitGroup
	for w := 0; w < loadWriters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed + int64(w)))
			for seq := 0; seq < loadPerWriter; seq++ {
				msg := loadMsg(w, seq, rng.Intn(1500))
				var err error
				if seq%3 == 2 {
					var wr io.WriteCloser
					if wr, err = c.Writer(ctx, MessageText); err == nil {
						k := len(msg) / 2
						if _, err = wr.Write(msg[:k]); err == nil {
							_, err = wr.Write(msg[k:])
						}
						if cerr := wr.Close(); err == nil {
							err = cerr
						}
					}
				} else {
					err = c.Write(ctx, MessageText, msg)
				}
				if err != nil {
					writeErrs[w] = err
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	res := loadResult{sent: int(sent.Load())}
	if closer {
		if err := errors.Join(writeErrs...); err != nil {
			res.err = fmt.Errorf("closing side's write: %w", err)
		} else {
			if waitAll {
				select {
				case <-allIn:
				case <-ctx.Done():
				}
			}
			time.Sleep(delay)
			if err := c.Close(StatusNormalClosure, ""); err != nil {
				res.err = fmt.Errorf("Close: %w", err)
			}
		}
	} else {
		// Writes still going when the Close frame came fail; that is
		// how the peer's close ends them.
		for _, err := range writeErrs {
			if err != nil && !errors.Is(err, net.ErrClosed) && CloseStatus(err) != StatusAbnormalClosure {
				res.err = fmt.Errorf("write: %w", err)
			}
		}
	}
	end := <-readDone // within ctx
	res.received = end.n
	if CloseStatus(end.err) != StatusNormalClosure && res.err == nil {
		res.err = fmt.Errorf("read: %w", end.err)
	}
	return res
}

// loadFailures collects failures from many goroutines and reports the
// first few.
type loadFailures struct {
	mu   sync.Mutex
	list []string
}

func (f *loadFailures) add(format string, args ...any) {
	f.mu.Lock()
	f.list = append(f.list, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *loadFailures) report(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.list {
		if i == 10 {
			t.Errorf("… and %d more failures", len(f.list)-i)
			break
		}
		t.Error(s)
	}
}

// loadWaitZero waits, up to d, for n to come down to zero.
func loadWaitZero(n *atomic.Int64, d time.Duration) bool {
	for deadline := time.Now().Add(d); n.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// TestLoad opens a few thousand connections on loopback, all at once, then
// has every one exchange messages with concurrent writers on both ends and
// close at a random moment from a random side, some with compression. Each
// side reads with a Read loop or with AwaitMessage (on half of the servers
// and a quarter of the clients), some of the latter slowly. Every message
// the closing side wrote is delivered; of the other side's, what the
// closing side read is an in-order prefix, all of them where the closer
// waited for them. Goroutines and heap then return to where they started.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped with -short")
	}
	// The exchanges start spread over a while: all at the same instant,
	// 16000 runnable goroutines on two cores can keep one from running
	// for longer than Close's five-second handshake.
	n, spread := 2000, time.Second
	if raceEnabled {
		// Each connection runs eight goroutines, the race detector
		// allows 8128, and it makes everything several times slower.
		n, spread = 100, 2*time.Second
	}
	if s := os.Getenv("DUPLEX_LOAD_CONNS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("DUPLEX_LOAD_CONNS: %v", err)
		}
	}
	if room := loadFDs(2*n) / 2; room < n {
		t.Logf("the file descriptor limit leaves room for %d connections, not %d", room, n)
		n = room
	}
	loadWarm(9 * n) // eight goroutines per connection, and some
	getPoller()     // AwaitMessage's, which stays
	base := loadMeasure()

	var (
		results  sync.Map // connection id → chan loadResult from the server
		start    = make(chan struct{})
		active   atomic.Int64 // handlers running
		accepted atomic.Int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		q := r.URL.Query()
		opts := &AcceptOptions{}
		if q.Get("compress") == "1" {
			opts.Compression = &CompressionOptions{}
		}
		ch, ok := results.Load(q.Get("id"))
		if !ok {
			http.Error(w, "unknown connection", http.StatusBadRequest)
			return
		}
		c, err := Accept(w, r, opts)
		if err != nil {
			return
		}
		accepted.Add(1)
		<-start
		id, _ := strconv.ParseInt(q.Get("id"), 10, 64)
		jitter, _ := time.ParseDuration(q.Get("jitter"))
		delay, _ := time.ParseDuration(q.Get("delay"))
		ch.(chan loadResult) <- loadSide(c, q.Get("read"), q.Get("closer") == "server", q.Get("wait") == "1", jitter, delay, id*7919+1)
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	var (
		failures  loadFailures
		connected sync.WaitGroup
		clients   sync.WaitGroup
		dialed    atomic.Int64
		messages  atomic.Int64
		dropped   atomic.Int64 // the non-closing side's messages cut off by the close
		sem       = make(chan struct{}, 64)
		rng       = rand.New(rand.NewSource(1))
		reads     [2][len(loadReads)]int // connections by side and how it reads
	)
	// pickRead picks how a side reads: with AwaitMessage with probability
	// p, slowly one time in four.
	pickRead := func(p float64) int {
		switch {
		case rng.Float64() >= p:
			return 0
		case rng.Intn(4) == 0:
			return 2
		}
		return 1
	}
	dialStart := time.Now()
	for i := 0; i < n; i++ {
		id := strconv.Itoa(i)
		closer := [2]string{"client", "server"}[rng.Intn(2)]
		waitAll := rng.Intn(2) == 0
		jitter := time.Duration(rng.Int63n(int64(spread)))
		delay := time.Duration(rng.Intn(20)) * time.Millisecond
		compress := rng.Intn(4) == 0
		clientRead, serverRead := pickRead(0.25), pickRead(0.5)
		reads[0][clientRead]++
		reads[1][serverRead]++
		q := fmt.Sprintf("?id=%s&closer=%s&jitter=%v&delay=%v&wait=%d&compress=%d&read=%s",
			id, closer, jitter, delay, b2i(waitAll), b2i(compress), loadReads[serverRead])
		ch := make(chan loadResult, 1)
		results.Store(id, ch)
		connected.Add(1)
		clients.Add(1)
		go func() {
			defer clients.Done()
			sem <- struct{}{}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			opts := &DialOptions{}
			if compress {
				opts.Compression = &CompressionOptions{}
			}
			c, _, err := Dial(ctx, url+q, opts)
			cancel()
			<-sem
			connected.Done()
			if err != nil {
				failures.add("conn %s: Dial: %v", id, err)
				return
			}
			dialed.Add(1)
			<-start
			cr := loadSide(c, loadReads[clientRead], closer == "client", waitAll, jitter, delay, int64(i)*7919)
			// A timer, stopped, rather than time.After: under go 1.22
			// semantics an unfired timer stays on the heap.
			timer := time.NewTimer(time.Minute)
			var sr loadResult
			select {
			case sr = <-ch:
				timer.Stop()
				results.Delete(id)
			case <-timer.C:
				failures.add("conn %s: the server side never finished", id)
				return
			}
			for _, side := range []struct {
				name string
				res  loadResult
			}{{"client", cr}, {"server", sr}} {
				if side.res.err != nil {
					failures.add("conn %s (%s closes, wait=%v, reads: client %s, server %s): %s: %v",
						id, closer, waitAll, loadReads[clientRead], loadReads[serverRead], side.name, side.res.err)
				}
			}
			cl, other := cr, sr
			if closer == "server" {
				cl, other = sr, cr
			}
			full := loadWriters * loadPerWriter
			switch {
			case cl.sent != full || other.received != full:
				failures.add("conn %s (%s closes): the closing side wrote %d of %d messages and the other side read %d", id, closer, cl.sent, full, other.received)
			case cl.received > other.sent:
				failures.add("conn %s (%s closes): the closing side read %d messages, but only %d were written", id, closer, cl.received, other.sent)
			case waitAll && cl.received != full:
				failures.add("conn %s (%s closes): the closing side waited for all messages but read %d of %d", id, closer, cl.received, full)
			}
			messages.Add(int64(cl.sent + other.sent))
			dropped.Add(int64(other.sent - cl.received))
		}()
	}
	connected.Wait()
	dialTime := time.Since(dialStart)
	if accepted.Load() != dialed.Load() {
		time.Sleep(100 * time.Millisecond) // Accept returned before Dial did; count again
	}
	peak := loadMeasure()
	t.Logf("%d of %d connections open at once after %v (%d accepted): %v", dialed.Load(), n, dialTime.Round(time.Millisecond), accepted.Load(), peak)
	t.Logf("reads (%v): clients %v, servers %v", loadReads, reads[0], reads[1])

	exchangeStart := time.Now()
	close(start)
	allDone := make(chan struct{})
	go func() { clients.Wait(); close(allDone) }()
	select {
	case <-allDone:
	case <-time.After(3 * time.Minute):
		t.Fatal("connections still running after three minutes")
	}
	exchange := time.Since(exchangeStart)
	if !loadWaitZero(&active, 10*time.Second) {
		t.Errorf("%d server handlers still running", active.Load())
	}
	srv.Close()
	failures.report(t)
	loadAwaitSettled(t)

	end := loadSettle(base, 5)
	t.Logf("exchange: %d messages in %v (%.0f msgs/s); %d of the non-closing sides' messages cut off by the close",
		messages.Load(), exchange.Round(time.Millisecond), float64(messages.Load())/exchange.Seconds(), dropped.Load())
	t.Logf("start: %v; all connected: %v; end: %v", base, peak, end)
	loadCheckSettled(t, base, end, 4<<20)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// soakScenarios are what a soak cycle can do to a connection. The client
// picks one and tells the server with the URL.
var soakScenarios = [...]string{
	"clean",           // echo some messages, client closes
	"server-close",    // echo some messages, server closes with 1001
	"client-closenow", // client drops the TCP connection mid-exchange
	"client-reset",    // client resets the TCP connection mid-exchange
	"server-closenow", // server drops the TCP connection after a message
	"vanish",          // raw client sends half a frame and goes
	"ctx-cancel",      // reads cut short by contexts, then a clean close
	"dial-cancel",     // Dial's context cancelled at a random moment
}

// soakServe is the server side of a soak cycle: it echoes messages until
// the connection ends, or does what the scenario says, and returns how the
// connection ended.
func soakServe(c *Conn, scenario string) error {
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; ; i++ {
		switch {
		case scenario == "server-close" && i == 3:
			return c.Close(StatusGoingAway, "soak")
		case scenario == "server-closenow" && i == 1:
			return c.CloseNow()
		}
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return err
		}
	}
}

// soakServeAwait is soakServe for a connection served with AwaitMessage: it
// returns at once, leaving no goroutine behind while the connection idles,
// and end is called with how the connection ended. A read deadline bounds
// the whole connection, as soakServe's context does.
func soakServeAwait(c *Conn, scenario string, end func(error)) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	dl, _ := ctx.Deadline()
	c.SetReadDeadline(dl)
	finish := func(err error) {
		c.CloseNow()
		cancel()
		end(err)
	}
	echoed := 0
	var serve func()
	serve = func() {
		typ, msg, err := c.Read(ctx)
		if err == nil {
			err = c.Write(ctx, typ, msg)
		}
		if err != nil {
			finish(err)
			return
		}
		echoed++
		switch {
		case scenario == "server-close" && echoed == 3:
			finish(c.Close(StatusGoingAway, "soak"))
		case scenario == "server-closenow" && echoed == 1:
			finish(c.CloseNow())
		default:
			c.AwaitMessage(serve)
		}
	}
	c.AwaitMessage(serve)
}

// soakMessage returns a message of a random size, now and then large.
func soakMessage(rng *rand.Rand) []byte {
	n := rng.Intn(4096)
	if rng.Intn(16) == 0 {
		n = 64<<10 + rng.Intn(192<<10)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + rng.Intn(4)) // compressible, valid UTF-8
	}
	return b
}

// soakEcho writes k messages while reading their echoes, and checks them.
func soakEcho(ctx context.Context, c *Conn, rng *rand.Rand, k int) error {
	msgs := make([][]byte, k)
	for i := range msgs {
		msgs[i] = soakMessage(rng)
	}
	streamed := rng.Intn(2) == 0
	written := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			var err error
			if streamed {
				var w io.WriteCloser
				if w, err = c.Writer(ctx, MessageText); err == nil {
					_, err = w.Write(m)
					if cerr := w.Close(); err == nil {
						err = cerr
					}
				}
			} else {
				err = c.Write(ctx, MessageText, m)
			}
			if err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	var readErr error
	for i := 0; i < k && readErr == nil; i++ {
		_, got, err := c.Read(ctx)
		switch {
		case err != nil:
			readErr = fmt.Errorf("reading echo %d: %w", i, err)
		case !bytes.Equal(got, msgs[i]):
			readErr = fmt.Errorf("echo %d: %d bytes, want %d", i, len(got), len(msgs[i]))
		}
	}
	if readErr != nil {
		c.CloseNow()
	}
	if err := <-written; err != nil && readErr == nil {
		return err
	}
	return readErr
}

// soakRawDial performs the opening handshake by hand, for a client that
// then misbehaves.
func soakRawDial(ctx context.Context, url string) (net.Conn, error) {
	host, path, _ := strings.Cut(strings.TrimPrefix(url, "ws://"), "/")
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /" + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		nc.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("raw handshake: %v %v", resp, err)
	}
	return nc, nil
}

// soakCycle runs one scenario on a new connection and returns the number
// of messages echoed and what went wrong, if anything. serverEnd delivers
// how the server's side ended.
func soakCycle(url, scenario string, compress bool, rng *rand.Rand, serverEnd func() (error, bool)) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := &DialOptions{}
	if compress {
		opts.Compression = &CompressionOptions{ContextTakeover: rng.Intn(2) == 0}
	}
	wantServer := func(want ...StatusCode) error {
		err, ok := serverEnd()
		if !ok {
			return errors.New("the server side never finished")
		}
		got := CloseStatus(err)
		for _, w := range want {
			if got == w || (w == 0 && err == nil) {
				return nil
			}
		}
		return fmt.Errorf("server ended with %v (status %v), want status %v", err, got, want)
	}

	switch scenario {
	case "vanish":
		nc, err := soakRawDial(ctx, url)
		if err != nil {
			return 0, err
		}
		h := Header{Fin: true, Opcode: OpBinary, Masked: true, MaskKey: newMaskKey(), Length: 1000}
		wire := AppendHeader(nil, h)
		wire = append(wire, make([]byte, 1000)...)
		Mask(wire[len(wire)-1000:], h.MaskKey)
		cut := 1 + rng.Intn(len(wire)-1) // somewhere in the header or the payload
		_, _ = nc.Write(wire[:cut])
		if rng.Intn(2) == 0 {
			_ = nc.(*net.TCPConn).SetLinger(0)
		}
		nc.Close()
		return 0, wantServer(StatusAbnormalClosure)

	case "dial-cancel":
		dctx, dcancel := context.WithCancel(ctx)
		time.AfterFunc(time.Duration(rng.Intn(1500))*time.Microsecond, dcancel)
		c, _, err := Dial(dctx, url, opts)
		dcancel()
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				return 0, fmt.Errorf("Dial cancelled: %v, want context.Canceled", err)
			}
			// The server may or may not have got as far as Accept;
			// its handler ends either way, and the test waits for
			// it at the end.
			return 0, nil
		}
		// The handshake won the race: the connection is fine.
		if err := soakEcho(ctx, c, rng, 1); err != nil {
			return 0, err
		}
		if err := c.Close(StatusNormalClosure, ""); err != nil {
			return 1, err
		}
		return 1, wantServer(StatusNormalClosure)
	}

	c, _, err := Dial(ctx, url, opts)
	if err != nil {
		return 0, err
	}
	defer c.CloseNow()
	k := 1 + rng.Intn(8)
	switch scenario {
	case "clean":
		if err := soakEcho(ctx, c, rng, k); err != nil {
			return 0, err
		}
		if err := c.Close(StatusNormalClosure, ""); err != nil {
			return k, fmt.Errorf("Close: %w", err)
		}
		return k, wantServer(StatusNormalClosure)

	case "server-close":
		if err := soakEcho(ctx, c, rng, 3); err != nil {
			return 0, err
		}
		_, _, err := c.Read(ctx)
		var ce CloseError
		if !errors.As(err, &ce) || ce.Code != StatusGoingAway || ce.Reason != "soak" {
			return 3, fmt.Errorf("read after the server's Close: %v, want 1001 \"soak\"", err)
		}
		return 3, wantServer(0) // the server's Close returned nil

	case "server-closenow":
		err := soakEcho(ctx, c, rng, 2)
		if CloseStatus(err) != StatusAbnormalClosure {
			return 1, fmt.Errorf("server dropped the connection; client saw %v, want 1006", err)
		}
		return 1, wantServer(0)

	case "client-closenow", "client-reset":
		// Cut the exchange short at a random point.
		cut := make(chan struct{})
		time.AfterFunc(time.Duration(rng.Intn(3000))*time.Microsecond, func() {
			if scenario == "client-reset" {
				_ = c.NetConn().(*net.TCPConn).SetLinger(0)
			}
			c.CloseNow()
			close(cut)
		})
		err := soakEcho(ctx, c, rng, k)
		<-cut
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return 0, fmt.Errorf("exchange cut short by CloseNow: %v, want net.ErrClosed", err)
		}
		// The server saw the connection break, or had already seen
		// everything and was waiting for more when it did.
		return 0, wantServer(StatusAbnormalClosure)

	case "ctx-cancel":
		// Waits for a message that is not coming, ended by a deadline
		// and by a cancellation, leave the connection usable.
		short, cancelShort := context.WithTimeout(ctx, time.Duration(1+rng.Intn(3))*time.Millisecond)
		_, _, err := c.Read(short)
		cancelShort()
		if !errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("read with a short deadline: %v", err)
		}
		cancelled, cancelNow := context.WithCancel(ctx)
		time.AfterFunc(time.Duration(rng.Intn(2000))*time.Microsecond, cancelNow)
		_, _, err = c.Read(cancelled)
		cancelNow()
		if !errors.Is(err, context.Canceled) {
			return 0, fmt.Errorf("read with a cancelled context: %v", err)
		}
		// A read cut short mid-message leaves the rest to be skipped.
		big := bytes.Repeat([]byte("x"), 256<<10)
		if err := c.Write(ctx, MessageText, big); err != nil {
			return 0, err
		}
		short, cancelShort = context.WithTimeout(ctx, time.Duration(rng.Intn(2000))*time.Microsecond)
		if _, r, err := c.Reader(short); err == nil {
			_, err = io.Copy(io.Discard, r)
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				cancelShort()
				return 1, fmt.Errorf("reading a message with a short deadline: %v", err)
			}
		} else if !errors.Is(err, context.DeadlineExceeded) {
			cancelShort()
			return 1, fmt.Errorf("waiting for a message with a short deadline: %v", err)
		}
		cancelShort()
		if err := c.Write(ctx, MessageText, []byte("after")); err != nil {
			return 1, err
		}
		for {
			_, got, err := c.Read(ctx)
			if err != nil {
				return 2, fmt.Errorf("read after cut-short reads: %w", err)
			}
			if string(got) == "after" {
				break
			}
			if !bytes.Equal(got, big) {
				return 2, fmt.Errorf("read after cut-short reads: %d bytes, want the rest skipped", len(got))
			}
		}
		if err := c.Close(StatusNormalClosure, ""); err != nil {
			return 2, fmt.Errorf("Close: %w", err)
		}
		return 2, wantServer(StatusNormalClosure)
	}
	panic("unknown soak scenario " + scenario)
}

// TestSoak cycles connections for DUPLEX_SOAK (a duration; 3 s when unset)
// through connect, exchange and close, with faults injected at random:
// CloseNow and resets mid-exchange, a peer vanishing mid-frame, contexts
// cancelled mid-read and mid-dial, server-side closes, compression on or
// off, the server reading with a Read loop or with AwaitMessage. Every
// cycle checks both ends' outcomes; at the end goroutines and heap must be
// back near where they started.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: skipped with -short")
	}
	duration := 3 * time.Second
	if s := os.Getenv("DUPLEX_SOAK"); s != "" {
		var err error
		if duration, err = time.ParseDuration(s); err != nil {
			t.Fatalf("DUPLEX_SOAK: %v", err)
		}
	}
	workers := 8
	if raceEnabled {
		workers = 4
	}
	loadWarm(1000)
	getPoller() // AwaitMessage's, which stays
	base := loadMeasure()

	var (
		ends   sync.Map     // cycle id → chan error, how the server's side ended
		active atomic.Int64 // server sides not yet ended
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		opts := &AcceptOptions{}
		if q.Get("compress") == "1" {
			opts.Compression = &CompressionOptions{ContextTakeover: q.Get("takeover") == "1"}
		}
		active.Add(1)
		c, err := Accept(w, r, opts)
		if err != nil {
			active.Add(-1)
			return
		}
		end := func(err error) {
			if ch, ok := ends.Load(q.Get("id")); ok {
				ch.(chan error) <- err
			}
			active.Add(-1)
		}
		if q.Get("await") == "1" {
			soakServeAwait(c, q.Get("scenario"), end)
			return
		}
		end(soakServe(c, q.Get("scenario")))
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/"

	var (
		failures loadFailures
		cycles   atomic.Int64
		messages atomic.Int64
		counts   [len(soakScenarios)]atomic.Int64
		awaited  atomic.Int64 // cycles whose server used AwaitMessage
		nextID   atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(duration)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for time.Now().Before(deadline) {
				i := rng.Intn(len(soakScenarios))
				scenario := soakScenarios[i]
				compress := rng.Intn(2) == 0
				await := rng.Intn(2) == 0
				id := strconv.FormatInt(nextID.Add(1), 10)
				ch := make(chan error, 1)
				ends.Store(id, ch)
				q := fmt.Sprintf("?id=%s&scenario=%s&compress=%d&takeover=%d&await=%d", id, scenario, b2i(compress), rng.Intn(2), b2i(await))
				serverEnd := func() (error, bool) {
					timer := time.NewTimer(30 * time.Second)
					defer timer.Stop()
					select {
					case err := <-ch:
						return err, true
					case <-timer.C:
						return nil, false
					}
				}
				n, err := soakCycle(url+q, scenario, compress, rng, serverEnd)
				ends.Delete(id)
				if err != nil {
					failures.add("cycle %s (%s, compress=%v, await=%v): %v", id, scenario, compress, await, err)
				}
				cycles.Add(1)
				counts[i].Add(1)
				if await {
					awaited.Add(1)
				}
				messages.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if !loadWaitZero(&active, 10*time.Second) {
		t.Errorf("%d server sides still running", active.Load())
	}
	srv.Close()
	failures.report(t)
	loadAwaitSettled(t)

	end := loadSettle(base, 5)
	var mix []string
	for i, s := range soakScenarios {
		mix = append(mix, fmt.Sprintf("%s %d", s, counts[i].Load()))
	}
	sort.Strings(mix)
	t.Logf("soak: %v with %d workers: %d connections (%.0f/s), %d messages echoed (%.0f/s)",
		elapsed.Round(time.Millisecond), workers, cycles.Load(), float64(cycles.Load())/elapsed.Seconds(),
		messages.Load(), float64(messages.Load())/elapsed.Seconds())
	t.Logf("scenarios: %s; %d of the cycles served with AwaitMessage", strings.Join(mix, ", "), awaited.Load())
	t.Logf("start: %v; end: %v", base, end)
	loadCheckSettled(t, base, end, 16<<20)
}
