package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// Both server endpoints echo text and binary, whole and fragmented,
// compressed or not, including a message over the default read limit.
func TestServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups, not defers: they must wait for the parallel subtests.
	t.Cleanup(func() { ln.Close() })
	go serve(ln)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)

	// A text message whose fragments split a two-byte UTF-8 sequence, as
	// the suite's 6.x cases do.
	split := strings.Repeat("a", 16<<10-1) + "é" + strings.Repeat("b", 100)
	msgs := []struct {
		typ    websocket.MessageType
		data   []byte
		chunks []int // write in these sizes, then the rest, through Conn.Writer; nil: Conn.Write
	}{
		{websocket.MessageText, nil, nil},
		{websocket.MessageText, []byte("Hello, Autobahn"), nil},
		{websocket.MessageBinary, []byte{0, 1, 2, 0xff}, nil},
		{websocket.MessageText, []byte(split), []int{16 << 10, 101}},
		{websocket.MessageBinary, bytes.Repeat([]byte("fragment "), 10000), []int{1, 20000, 1000, 40000}},
		// Over the default read limit, so the raised one must be in
		// force; the suite's 16 MiB would only make the test slower.
		{websocket.MessageBinary, bytes.Repeat([]byte("four megabytes "), 4<<20/15), nil},
	}
	for name, path := range map[string]string{"whole": "/", "stream": "/stream"} {
		for _, comp := range []*websocket.CompressionOptions{nil, {}} {
			t.Run(fmt.Sprintf("%s compressed=%v", name, comp != nil), func(t *testing.T) {
				t.Parallel()
				c, resp, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+path, &websocket.DialOptions{Compression: comp})
				if err != nil {
					t.Fatal(err)
				}
				defer c.CloseNow()
				if got := resp.Header.Get("Sec-WebSocket-Extensions"); (comp != nil) != strings.HasPrefix(got, "permessage-deflate") {
					t.Fatalf("offered compression: %v; server answered %q", comp != nil, got)
				}
				c.SetReadLimit(readLimit)
				for _, m := range msgs {
					// Write while reading: "/stream" echoes before it
					// has read a whole message.
					werr := make(chan error, 1)
					go func() { werr <- write(ctx, c, m.typ, m.data, m.chunks) }()
					typ, got, err := c.Read(ctx)
					if err != nil || typ != m.typ || !bytes.Equal(got, m.data) {
						t.Fatalf("sent %v of %d bytes, got %v of %d bytes, %v", m.typ, len(m.data), typ, len(got), err)
					}
					if err := <-werr; err != nil {
						t.Fatal(err)
					}
				}
				if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// write sends p as one message, whole or streamed in chunks.
func write(ctx context.Context, c *websocket.Conn, typ websocket.MessageType, p []byte, chunks []int) error {
	if chunks == nil {
		return c.Write(ctx, typ, p)
	}
	w, err := c.Writer(ctx, typ)
	if err != nil {
		return err
	}
	for _, n := range append(chunks, len(p)) {
		n = min(n, len(p))
		if _, err := w.Write(p[:n]); err != nil {
			w.Close()
			return err
		}
		p = p[n:]
	}
	return w.Close()
}

// fuzzingServer plays the part of the suite's fuzzingserver: it has three
// cases, each of which sends some messages and checks that they come back.
type fuzzingServer struct {
	mu      sync.Mutex
	ran     []int    // cases run, in order
	failed  []string // what went wrong in cases
	reports []string // agents the reports were updated for
}

// caseMessages are what every case sends: the kinds of message an echoing
// client must get right.
var caseMessages = []struct {
	typ  websocket.MessageType
	data []byte
}{
	{websocket.MessageText, []byte("case")},
	{websocket.MessageText, nil},
	{websocket.MessageBinary, []byte{0xde, 0xad, 0xbe, 0xef}},
	{websocket.MessageText, bytes.Repeat([]byte("compress me "), 20000)},
}

func (f *fuzzingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Compression: &websocket.CompressionOptions{}})
	if err != nil {
		f.fail("%s: %v", r.URL, err)
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	agent := r.URL.Query().Get("agent")
	switch r.URL.Path {
	case "/getCaseCount":
		c.Write(ctx, websocket.MessageText, []byte("3"))
		c.Close(websocket.StatusNormalClosure, "")
	case "/updateReports":
		f.mu.Lock()
		f.reports = append(f.reports, agent)
		f.mu.Unlock()
		c.Close(websocket.StatusNormalClosure, "")
	case "/runCase":
		n, _ := strconv.Atoi(r.URL.Query().Get("case"))
		f.mu.Lock()
		f.ran = append(f.ran, n)
		f.mu.Unlock()
		if agent != "duplex test" {
			f.fail("case %d: agent %q", n, agent)
		}
		for _, m := range caseMessages {
			if err := c.Write(ctx, m.typ, m.data); err != nil {
				f.fail("case %d: %v", n, err)
				return
			}
			typ, got, err := c.Read(ctx)
			if err != nil || typ != m.typ || !bytes.Equal(got, m.data) {
				f.fail("case %d: sent %v of %d bytes, got %v of %d bytes, %v", n, m.typ, len(m.data), typ, len(got), err)
				return
			}
		}
		// Case 2 ends as a protocol violation would, which the
		// client must take as the case's outcome and carry on.
		code := websocket.StatusNormalClosure
		if n == 2 {
			code = websocket.StatusProtocolError
		}
		c.Close(code, "")
	default:
		f.fail("unexpected request for %s", r.URL)
	}
}

func (f *fuzzingServer) fail(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = append(f.failed, fmt.Sprintf(format, args...))
}

// The client runs every case, or those asked for, echoing every message,
// and then has the reports updated under its agent name.
func TestClient(t *testing.T) {
	for _, tc := range []struct {
		cases string
		want  []int
	}{
		{"", []int{1, 2, 3}},
		{"3,1-2", []int{3, 1, 2}},
		{"2", []int{2}},
	} {
		t.Run("cases="+tc.cases, func(t *testing.T) {
			f := &fuzzingServer{}
			srv := httptest.NewServer(f)
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cases, err := parseCases(tc.cases)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			// The agent needs escaping in the query string.
			if err := runClient(ctx, &out, "ws"+strings.TrimPrefix(srv.URL, "http")+"/", "duplex test", cases); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if !slices.Equal(f.ran, tc.want) {
				t.Errorf("ran cases %v, want %v", f.ran, tc.want)
			}
			for _, msg := range f.failed {
				t.Error(msg)
			}
			if !slices.Equal(f.reports, []string{"duplex test"}) {
				t.Errorf("reports updated for agents %q, want once for \"duplex test\"", f.reports)
			}
			if want := fmt.Sprintf("case 2 (%d of %d): 1002 (protocol error)", slices.Index(tc.want, 2)+1, len(tc.want)); !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		})
	}
}

func TestClientErrors(t *testing.T) {
	f := &fuzzingServer{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := "ws" + strings.TrimPrefix(srv.URL, "http")
	if err := runClient(ctx, io.Discard, base, "duplex-test", []int{4}); err == nil || !strings.Contains(err.Error(), "case 4 does not exist") {
		t.Errorf("running case 4 of 3: %v", err)
	}
	srv.Close()
	if err := runClient(ctx, io.Discard, base, "duplex-test", nil); err == nil {
		t.Error("no error with the fuzzingserver gone")
	}
	for _, bad := range []string{"0", "x", "3-1", "1-", "-2"} {
		if _, err := parseCases(bad); err == nil {
			t.Errorf("parseCases(%q) accepted it", bad)
		}
	}
}
