package websocket_test

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
	"net/rpc"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// loopbackPair returns the two ends of a WebSocket connection over
// loopback TCP. Both are closed when the test ends.
func loopbackPair(t testing.TB) (client, server *websocket.Conn) {
	t.Helper()
	accepted := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			close(accepted)
			return
		}
		accepted <- c
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() {
		client.CloseNow()
		server.CloseNow()
	})
	return client, server
}

// A byte stream copied through NewNetConn in both directions, split into
// messages by io.Copy on one side and by uneven writes on the other, comes
// back intact; the client's Close ends the server's io.Copy with EOF.
func TestNetConnCopy(t *testing.T) {
	client, server := loopbackPair(t)
	type result struct {
		n   int64
		err error
	}
	echoed := make(chan result, 1)
	go func() {
		snc := websocket.NewNetConn(server, websocket.MessageBinary)
		n, err := io.Copy(snc, snc)
		echoed <- result{n, err}
	}()

	rnd := rand.New(rand.NewSource(1))
	data := make([]byte, 1<<20+7)
	rnd.Read(data)
	sizes := make([]int, 200) // of the writes, cycled
	for i := range sizes {
		sizes[i] = 1 + rnd.Intn(70000)
	}
	cnc := websocket.NewNetConn(client, websocket.MessageBinary)
	writeErr := make(chan error, 1)
	go func() {
		for rest, k := data, 0; len(rest) > 0; k++ {
			n := min(len(rest), sizes[k%len(sizes)])
			if _, err := cnc.Write(rest[:n]); err != nil {
				writeErr <- err
				return
			}
			rest = rest[n:]
		}
		writeErr <- nil
	}()
	got := make([]byte, len(data))
	for off, k := 0, 0; off < len(got); k++ {
		// Reads of many sizes, each returning what it can.
		n, err := cnc.Read(got[off:min(len(got), off+1+k*997%50000)])
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		off += n
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the stream came back changed")
	}
	if err := cnc.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	res := <-echoed
	if res.err != nil || res.n != int64(len(data)) {
		t.Fatalf("server io.Copy = %d, %v; want %d, nil (EOF on the client's normal closure)", res.n, res.err, len(data))
	}
}

// A line protocol read with bufio sees lines that span messages, and not
// the message boundaries; empty messages are skipped.
func TestNetConnLinesSpanMessages(t *testing.T) {
	client, server := loopbackPair(t)
	ctx := testContext(t)
	for _, m := range []string{"hel", "", "lo\nwor", "ld\nla", "st", "\n"} {
		if err := server.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- server.Close(websocket.StatusGoingAway, "restarting") }()

	br := bufio.NewReader(websocket.NewNetConn(client, websocket.MessageText))
	for _, want := range []string{"hello\n", "world\n", "last\n"} {
		line, err := br.ReadString('\n')
		if line != want || err != nil {
			t.Fatalf("ReadString = %q, %v; want %q", line, err, want)
		}
	}
	if line, err := br.ReadString('\n'); line != "" || err != io.EOF {
		t.Fatalf("after the peer's 1001: ReadString = %q, %v; want io.EOF", line, err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// NetConnRPC is served over net/rpc by TestNetConnRPC.
type NetConnRPC struct{}

// Reverse replies with args reversed.
func (NetConnRPC) Reverse(args []byte, reply *[]byte) error {
	r := make([]byte, len(args))
	for i, b := range args {
		r[len(args)-1-i] = b
	}
	*reply = r
	return nil
}

// net/rpc, which writes through a bufio.Writer and reads through a
// bufio.Reader, runs concurrent calls whose gob encodings span many
// messages; closing the client ends the server's ServeConn.
func TestNetConnRPC(t *testing.T) {
	client, server := loopbackPair(t)
	rs := rpc.NewServer()
	if err := rs.Register(NetConnRPC{}); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		rs.ServeConn(websocket.NewNetConn(server, websocket.MessageBinary))
	}()
	rc := rpc.NewClient(websocket.NewNetConn(client, websocket.MessageBinary))

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := pattern(1+i*40000, false)
			var reply []byte
			if err := rc.Call("NetConnRPC.Reverse", args, &reply); err != nil {
				errs <- err
				return
			}
			for j := range args {
				if reply[len(reply)-1-j] != args[j] {
					errs <- fmt.Errorf("call %d: wrong reply", i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn did not return after the client closed")
	}
}

// A peer's normal closure (1000) or going away (1001) reads as io.EOF;
// other closures read as an error carrying their status.
func TestNetConnCloseStatus(t *testing.T) {
	for _, code := range []websocket.StatusCode{
		websocket.StatusNormalClosure, websocket.StatusGoingAway,
		websocket.StatusInternalError, websocket.StatusPolicyViolation, 4000,
	} {
		t.Run(fmt.Sprint(int(code)), func(t *testing.T) {
			client, server := loopbackPair(t)
			closed := make(chan error, 1)
			go func() { closed <- server.Close(code, "done") }()
			nc := websocket.NewNetConn(client, websocket.MessageBinary)
			buf := make([]byte, 10)
			for range 2 { // and it stays that way
				n, err := nc.Read(buf)
				clean := code == websocket.StatusNormalClosure || code == websocket.StatusGoingAway
				if clean && (n != 0 || err != io.EOF) {
					t.Fatalf("Read = %d, %v; want io.EOF", n, err)
				}
				if !clean && (err == io.EOF || websocket.CloseStatus(err) != code) {
					t.Fatalf("Read = %d, %v; want an error with status %v", n, err, code)
				}
			}
			if err := <-closed; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A message of the other type fails the connection with 1003, which the
// peer sees, and every later Read says why.
func TestNetConnWrongMessageType(t *testing.T) {
	client, server := loopbackPair(t)
	ctx := testContext(t)
	if err := server.Write(ctx, websocket.MessageText, []byte("not binary")); err != nil {
		t.Fatal(err)
	}
	peer := make(chan error, 1)
	go func() {
		_, _, err := server.Read(ctx)
		peer <- err
	}()
	nc := websocket.NewNetConn(client, websocket.MessageBinary)
	for range 2 {
		n, err := nc.Read(make([]byte, 64))
		if n != 0 || websocket.CloseStatus(err) != websocket.StatusUnsupportedData || !strings.Contains(err.Error(), "text message") {
			t.Fatalf("Read = %d, %v; want a 1003 error about the text message", n, err)
		}
	}
	if err := <-peer; websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
		t.Fatalf("the peer read %v; want close status 1003", err)
	}
}

// isDeadlineError reports whether err is what a net.Conn returns for a missed
// deadline.
func isDeadlineError(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
}

// Expired deadlines fail reads and writes with a timeout and leave the
// connection usable: a read that times out between the frames of a message
// resumes the same message, and a write that timed out sent nothing.
func TestNetConnDeadlines(t *testing.T) {
	client, server := loopbackPair(t)
	ctx := testContext(t)
	nc := websocket.NewNetConn(client, websocket.MessageBinary)
	buf := make([]byte, 64<<10)

	// Nothing to read.
	nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if n, err := nc.Read(buf); n != 0 || !isDeadlineError(err) {
		t.Fatalf("Read past the deadline = %d, %v; want a timeout", n, err)
	}

	// In the middle of a message: the first frame is read, the second
	// is late.
	w, err := server.Writer(ctx, websocket.MessageBinary)
	if err != nil {
		t.Fatal(err)
	}
	head := pattern(20000, false) // large enough to go out as a frame at once
	if _, err := w.Write(head); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Time{})
	if _, err := io.ReadFull(nc, buf[:len(head)]); err != nil || !bytes.Equal(buf[:len(head)], head) {
		t.Fatalf("first frame: %v", err)
	}
	nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if n, err := nc.Read(buf); n != 0 || !isDeadlineError(err) {
		t.Fatalf("Read mid-message past the deadline = %d, %v; want a timeout", n, err)
	}
	nc.SetReadDeadline(time.Time{})
	if _, err := w.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := server.Write(ctx, websocket.MessageBinary, []byte("next")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(nc, buf[:8]); err != nil || string(buf[:8]) != "tailnext" {
		t.Fatalf("after the timeout: read %q, %v; want the rest of the message and the next", buf[:8], err)
	}

	// A write past its deadline sends nothing.
	nc.SetWriteDeadline(time.Now().Add(-time.Second))
	if n, err := nc.Write([]byte("lost")); n != 0 || !isDeadlineError(err) {
		t.Fatalf("Write past the deadline = %d, %v; want a timeout", n, err)
	}
	nc.SetWriteDeadline(time.Time{})
	if _, err := nc.Write([]byte("kept")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := server.Read(ctx); err != nil || string(msg) != "kept" {
		t.Fatalf("the peer read %q, %v; want only the write made in time", msg, err)
	}

	// SetDeadline sets both.
	nc.SetDeadline(time.Now().Add(-time.Second))
	if _, err := nc.Read(buf); !isDeadlineError(err) {
		t.Fatalf("Read after SetDeadline: %v; want a timeout", err)
	}
	if _, err := nc.Write([]byte("lost")); !isDeadlineError(err) {
		t.Fatalf("Write after SetDeadline: %v; want a timeout", err)
	}
	nc.SetDeadline(time.Time{})
	if _, err := nc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	typ, msg, err := server.Read(ctx)
	if err != nil || string(msg) != "ping" {
		t.Fatalf("the peer read %q, %v", msg, err)
	}
	if err := server.Write(ctx, typ, msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(nc, buf[:4]); err != nil || string(buf[:4]) != "ping" {
		t.Fatalf("read %q, %v", buf[:4], err)
	}
}

// Each Write is one message, whole, even from many goroutines at once.
func TestNetConnConcurrentWrites(t *testing.T) {
	const writers, perWriter = 8, 50
	client, server := loopbackPair(t)
	ctx := testContext(t)
	nc := websocket.NewNetConn(client, websocket.MessageText)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				msg := fmt.Sprintf("%d %d %s", g, i, strings.Repeat("x", (g*perWriter+i)*97%5000))
				if _, err := nc.Write([]byte(msg)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]int, writers)
	for range writers * perWriter {
		_, msg, err := server.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var g, i int
		var pad string
		if n, _ := fmt.Sscanf(string(msg), "%d %d %s", &g, &i, &pad); n < 2 || i != next[g] ||
			len(msg) != len(fmt.Sprintf("%d %d ", g, i))+(g*perWriter+i)*97%5000 {
			t.Fatalf("message %.40q… (%d bytes) is not whole write %d of writer %d", msg, len(msg), next[g], g)
		}
		next[g]++
	}
	wg.Wait()
}

func TestNetConnAddrs(t *testing.T) {
	client, server := loopbackPair(t)
	nc := websocket.NewNetConn(client, websocket.MessageBinary)
	if nc.LocalAddr().String() != server.RemoteAddr().String() || nc.RemoteAddr().String() != server.LocalAddr().String() {
		t.Fatalf("addresses %v → %v; the server sees %v → %v", nc.LocalAddr(), nc.RemoteAddr(), server.RemoteAddr(), server.LocalAddr())
	}
}

// underRaceDetector reports whether the test binary was built with -race,
// under which sync.Pool drops items at random, so pooled buffers are
// allocated again.
func underRaceDetector() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// Writing a message through the adapter and reading the echo back allocates
// nothing once the connection is warm.
func TestNetConnAllocs(t *testing.T) {
	if underRaceDetector() {
		t.Skip("sync.Pool drops buffers at random under the race detector")
	}
	client, server := loopbackPair(t)
	go func() {
		snc := websocket.NewNetConn(server, websocket.MessageBinary)
		io.CopyBuffer(snc, struct{ io.Reader }{snc}, make([]byte, 32<<10))
	}()
	nc := websocket.NewNetConn(client, websocket.MessageBinary)
	msg, buf := pattern(1024, false), make([]byte, 1024)
	roundTrip := func() {
		if _, err := nc.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(nc, buf); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	if n := testing.AllocsPerRun(200, roundTrip); n != 0 {
		t.Errorf("%v allocations per round trip; want 0", n)
	}
	nc.Close()
}
