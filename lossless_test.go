package websocket_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// Nothing written is lost on a clean close: every message a writer
// completed before Close was called reaches the peer before the Close
// frame, whichever side closes, however many goroutines wrote, whether or
// not a goroutine on the closing side reads, and with compression.
//
// What is guaranteed is one-sided. The closing side's messages all arrive.
// The peer's messages are delivered to the closing side only up to the
// moment Close was called: once our Close frame is out, the application
// has said it is done, and messages still arriving may be discarded by
// Close. So for the peer's messages the tests check only that what did
// arrive is an in-order prefix of each of its writers' messages, with no
// gap, duplicate or corruption.

// losslessMsg formats message seq of writer w, padded to size bytes.
func losslessMsg(prefix string, w, seq, size int) []byte {
	head := prefix + strconv.Itoa(w) + ":" + strconv.Itoa(seq) + ":"
	b := make([]byte, max(size, len(head)))
	copy(b, head)
	for i := len(head); i < len(b); i++ {
		b[i] = "abcdefghijklmnopqrstuvwxyz"[(i+seq)%26]
	}
	return b
}

// losslessTally checks messages from several writers as they arrive: each
// writer's messages in order, each once, each intact.
type losslessTally struct {
	prefix string
	next   []int
	err    error // the first violation
}

func newLosslessTally(prefix string, writers int) *losslessTally {
	return &losslessTally{prefix: prefix, next: make([]int, writers)}
}

func (l *losslessTally) add(msg []byte) {
	if l.err != nil {
		return
	}
	rest, ok := strings.CutPrefix(string(msg), l.prefix)
	ws, rest, ok1 := strings.Cut(rest, ":")
	ss, _, ok2 := strings.Cut(rest, ":")
	w, err1 := strconv.Atoi(ws)
	seq, err2 := strconv.Atoi(ss)
	if !ok || !ok1 || !ok2 || err1 != nil || err2 != nil || w < 0 || w >= len(l.next) {
		l.err = fmt.Errorf("malformed message %q", msg[:min(len(msg), 40)])
		return
	}
	if seq != l.next[w] {
		l.err = fmt.Errorf("writer %d: got message %d, want %d", w, seq, l.next[w])
		return
	}
	if want := losslessMsg(l.prefix, w, seq, len(msg)); string(want) != string(msg) {
		l.err = fmt.Errorf("writer %d message %d is corrupted", w, seq)
		return
	}
	l.next[w]++
}

// complete reports an error unless every writer's perWriter messages
// arrived.
func (l *losslessTally) complete(perWriter int) error {
	if l.err != nil {
		return l.err
	}
	for w, n := range l.next {
		if n != perWriter {
			return fmt.Errorf("writer %d: %d of %d messages arrived", w, n, perWriter)
		}
	}
	return nil
}

// losslessReadAll reads until an error, tallying every message, and returns
// the error.
func losslessReadAll(c *websocket.Conn, tally *losslessTally) error {
	for {
		_, msg, err := c.Read(context.Background())
		if err != nil {
			return err
		}
		tally.add(msg)
	}
}

// losslessWrite writes the perWriter messages of writer w, whole or
// streamed in uneven pieces, sized at random with now and then one that
// spans several frames.
func losslessWrite(ctx context.Context, c *websocket.Conn, prefix string, w, perWriter int, rng *rand.Rand) error {
	for seq := 0; seq < perWriter; seq++ {
		size := rng.Intn(2000)
		if rng.Intn(20) == 0 {
			size = 16<<10 + rng.Intn(24<<10)
		}
		msg := losslessMsg(prefix, w, seq, size)
		if rng.Intn(2) == 0 {
			if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
				return err
			}
			continue
		}
		wr, err := c.Writer(ctx, websocket.MessageText)
		if err != nil {
			return err
		}
		for rest := msg; len(rest) > 0 && err == nil; {
			k := min(len(rest), 1+rng.Intn(len(rest)))
			_, err = wr.Write(rest[:k])
			rest = rest[k:]
		}
		if cerr := wr.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var losslessCompressions = []struct {
	name string
	opts *websocket.CompressionOptions
}{
	{"plain", nil},
	{"deflate", &websocket.CompressionOptions{}},
	{"deflate-takeover", &websocket.CompressionOptions{ContextTakeover: true}},
}

// losslessPair connects a client to a server accepted with comp; both are
// closed when the test ends.
func losslessPair(t *testing.T, url string, conns <-chan *websocket.Conn, comp *websocket.CompressionOptions) (client, server *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultWait)
	defer cancel()
	client, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Compression: comp})
	if err != nil {
		t.Fatal(err)
	}
	server = faultAwait(t, conns, "accepted connection")
	t.Cleanup(func() {
		client.CloseNow()
		server.CloseNow()
	})
	return client, server
}

// losslessRaceBuild reports whether the test binary was built with -race.
func losslessRaceBuild() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// TestLosslessClose: N writer goroutines each write sequence-numbered
// messages; after all of them have returned, Close(1000). The peer reads
// until the CloseError 1000 and must have every message exactly once, in
// order per writer. Variants: either side closes; the closing side runs a
// reader goroutine or leaves reading to Close; the peer writes at the same
// time or not; with and without permessage-deflate.
func TestLosslessClose(t *testing.T) {
	const writers, perWriter = 4, 30
	// Each round is a new connection, so more rounds try more
	// interleavings. Under the race detector compress/flate is slow, and
	// one round finds data races as well as many.
	rounds := 5
	if testing.Short() || losslessRaceBuild() {
		rounds = 1
	}
	for _, comp := range losslessCompressions {
		opts := &websocket.AcceptOptions{Compression: comp.opts}
		url, conns := faultAcceptServer(t, opts)
		for _, closerRole := range faultRoles {
			for _, closerReads := range []bool{false, true} {
				for _, peerWrites := range []bool{false, true} {
					name := fmt.Sprintf("%s/%s closes/closer reads=%v/peer writes=%v", comp.name, closerRole, closerReads, peerWrites)
					t.Run(name, func(t *testing.T) {
						for round := 0; round < rounds; round++ {
							client, server := losslessPair(t, url, conns, comp.opts)
							closer, peer := client, server
							if closerRole == "server" {
								closer, peer = server, client
							}
							losslessRound(t, closer, peer, writers, perWriter, closerReads, peerWrites, int64(round))
							if t.Failed() {
								return
							}
						}
					})
				}
			}
		}
	}
}

func losslessRound(t *testing.T, closer, peer *websocket.Conn, writers, perWriter int, closerReads, peerWrites bool, seed int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultWait)
	defer cancel()

	// The peer reads everything, and perhaps writes until it cannot.
	peerTally := newLosslessTally("c", writers)
	peerRead := faultGo(func() error { return losslessReadAll(peer, peerTally) })
	var peerWriters sync.WaitGroup
	peerWriteErrs := make(chan error, 2)
	if peerWrites {
		for w := 0; w < 2; w++ {
			peerWriters.Add(1)
			go func() {
				defer peerWriters.Done()
				rng := rand.New(rand.NewSource(seed*100 + int64(w) + 50))
				// Far more than fit before the close: the writer
				// ends when the connection closes.
				peerWriteErrs <- losslessWrite(ctx, peer, "p", w, 1<<30, rng)
			}()
		}
	}

	closerTally := newLosslessTally("p", 2)
	var closerRead <-chan error
	if closerReads {
		closerRead = faultGo(func() error { return losslessReadAll(closer, closerTally) })
	}
	var wg sync.WaitGroup
	writeErrs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writeErrs <- losslessWrite(ctx, closer, "c", w, perWriter, rand.New(rand.NewSource(seed*100+int64(w))))
		}()
	}
	wg.Wait()
	close(writeErrs)
	for err := range writeErrs {
		if err != nil {
			t.Fatalf("closer's writer: %v", err)
		}
	}
	closeErr := faultGo(func() error { return closer.Close(websocket.StatusNormalClosure, "") })

	if err := faultAwait(t, peerRead, "peer's read error"); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("peer read: %v, want the CloseError 1000", err)
	}
	if err := peerTally.complete(perWriter); err != nil {
		t.Errorf("messages the closer wrote before Close: %v", err)
	}
	if err := faultAwait(t, closeErr, "Close"); err != nil {
		t.Errorf("Close: %v", err)
	}
	if closerReads {
		if err := faultAwait(t, closerRead, "closer's read error"); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			t.Errorf("closer's reader: %v, want the CloseError 1000", err)
		}
	}
	if closerTally.err != nil {
		t.Errorf("messages the peer wrote: %v", closerTally.err)
	}
	if peerWrites {
		done := make(chan struct{})
		go func() { peerWriters.Wait(); close(done) }()
		faultAwait(t, done, "peer's writers to stop")
		for w := 0; w < 2; w++ {
			// The close ends the peer's writes: its Close frame went
			// out (net.ErrClosed), or the closer tore the connection
			// down under a write (1006).
			err := <-peerWriteErrs
			if !errors.Is(err, net.ErrClosed) && websocket.CloseStatus(err) != websocket.StatusAbnormalClosure {
				t.Errorf("peer's writer ended with %v", err)
			}
		}
	}
}

// TestLosslessReadLoopWhenWeClose probes Close's takeover of reading. The
// peer writes K messages and then its Close frame. Our application runs a
// read loop that spends a moment on each message; meanwhile another of our
// goroutines calls Close. The loop is reading, just between two Read
// calls, yet Close finds the read lock free, takes over reading and
// discards the peer's remaining messages: the loop gets the CloseError
// without them, although the peer sent them all before its Close frame.
//
// The baseline (nobody calls Close on our side) shows the loop gets every
// message.
func TestLosslessReadLoopWhenWeClose(t *testing.T) {
	const k = 200
	url, conns := faultAcceptServer(t, nil)
	for _, ourRole := range faultRoles {
		for _, weClose := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/we close=%v", ourRole, weClose), func(t *testing.T) {
				if weClose {
				}
				client, server := losslessPair(t, url, conns, nil)
				ours, peer := client, server
				if ourRole == "server" {
					ours, peer = server, client
				}
				peerDone := faultGo(func() error {
					for i := 0; i < k; i++ {
						if err := peer.Write(context.Background(), websocket.MessageText, losslessMsg("p", 0, i, 100)); err != nil {
							return err
						}
					}
					err := peer.Close(websocket.StatusNormalClosure, "")
					if errors.Is(err, net.ErrClosed) {
						// Our Close crossed the peer's; the peer's
						// handshake ended when we closed.
						err = nil
					}
					return err
				})
				tally := newLosslessTally("p", 1)
				got := make(chan int, 1)
				var once sync.Once
				readErr := faultGo(func() error {
					for {
						_, msg, err := ours.Read(context.Background())
						if err != nil {
							return err
						}
						tally.add(msg)
						if tally.next[0] == 10 {
							once.Do(func() { got <- 10 })
						}
						time.Sleep(time.Millisecond) // handling the message
					}
				})
				var closeErr <-chan error
				if weClose {
					faultAwait(t, got, "the first messages")
					closeErr = faultGo(func() error { return ours.Close(websocket.StatusNormalClosure, "") })
				}
				err := faultAwait(t, readErr, "read loop's error")
				if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
					t.Errorf("read loop: %v, want a CloseError 1000", err)
				}
				if err := faultAwait(t, peerDone, "peer"); err != nil {
					t.Errorf("peer: %v", err)
				}
				if weClose {
					if err := faultAwait(t, closeErr, "Close"); err != nil {
						t.Errorf("Close: %v", err)
					}
				}
				if err := tally.complete(k); err != nil {
					t.Errorf("the read loop missed messages the peer sent before its Close frame: %v", err)
				}
			})
		}
	}
}
