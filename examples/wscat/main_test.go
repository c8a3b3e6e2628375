package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// The tests run wscat as people do, as a process with its own standard
// streams and exit status, against servers built for each case.

// result is how a run of wscat went.
type result struct {
	status         int
	stdout, stderr string
}

// wscat runs the command at bin with args and stdin, within a time limit.
func wscat(t *testing.T, bin, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) || ctx.Err() != nil {
		t.Fatalf("wscat %q: %v (ctx: %v)\nstderr:\n%s", args, err, ctx.Err(), stderr.String())
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

// server starts a test server on handler and returns its ws:// URL.
func server(t *testing.T, handler http.HandlerFunc) string {
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// echo echoes messages, and then sends how the connection ended to ended.
func echo(ended chan<- websocket.StatusCode) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Compression: &websocket.CompressionOptions{}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err == nil {
				err = c.Write(r.Context(), typ, msg)
			}
			if err != nil {
				if ended != nil {
					ended <- websocket.CloseStatus(err)
				}
				return
			}
		}
	}
}

// wantStatus waits for the server to report how a connection ended.
func wantStatus(t *testing.T, ended <-chan websocket.StatusCode, want websocket.StatusCode) {
	t.Helper()
	select {
	case got := <-ended:
		if got != want {
			t.Errorf("server saw the connection end with %v, want %v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Error("server did not see the connection end")
	}
}

func check(t *testing.T, r result, status int, stdout string, stderr ...string) {
	t.Helper()
	if r.status != status {
		t.Errorf("exit status %d, want %d", r.status, status)
	}
	if r.stdout != stdout {
		t.Errorf("stdout %q, want %q", r.stdout, stdout)
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q", s)
		}
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", r.stderr)
	}
}

func TestWscat(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "wscat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// Lines go out as text messages and their echoes come back on stdout;
	// end of input closes with 1000.
	t.Run("lines", func(t *testing.T) {
		t.Parallel()
		ended := make(chan websocket.StatusCode, 1)
		u := server(t, echo(ended))
		for _, compress := range []string{"-compress=false", "-compress"} {
			r := wscat(t, bin, "hello\r\n\nwörld "+strings.Repeat("long ", 100)+"\n", compress, u)
			check(t, r, 0, "hello\n\nwörld "+strings.Repeat("long ", 100)+"\n", "closed: status 1000 (normal closure)")
			wantStatus(t, ended, websocket.StatusNormalClosure)
		}
	})

	// -send sends one message and prints what arrives within -wait,
	// including replies that take their time.
	t.Run("send", func(t *testing.T) {
		t.Parallel()
		ended := make(chan websocket.StatusCode, 1)
		u := server(t, func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			c.Write(r.Context(), typ, msg)
			time.Sleep(100 * time.Millisecond)
			c.Write(r.Context(), websocket.MessageText, []byte("later"))
			_, _, err = c.Read(r.Context())
			ended <- websocket.CloseStatus(err)
		})
		r := wscat(t, bin, "ignored\n", "-send", `{"op":"status"}`, "-wait", "1s", u)
		check(t, r, 0, "{\"op\":\"status\"}\nlater\n", "closed: status 1000")
		wantStatus(t, ended, websocket.StatusNormalClosure)
	})

	// Ctrl-C closes with the closing handshake, like end of input.
	t.Run("interrupt", func(t *testing.T) {
		t.Parallel()
		ended := make(chan websocket.StatusCode, 1)
		u := server(t, echo(ended))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, u)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		// Once an echo is back, wscat is connected and reading.
		stdin.Write([]byte("are you there?\n"))
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if line != "are you there?\n" {
			t.Fatalf("read %q, %v", line, err)
		}
		cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%v\nstderr:\n%s", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "closed: status 1000") {
			t.Errorf("stderr:\n%s", stderr.String())
		}
		wantStatus(t, ended, websocket.StatusNormalClosure)
	})

	// A server closing with another status than 1000 gives exit status 3,
	// and its code and reason are reported.
	t.Run("server closes", func(t *testing.T) {
		t.Parallel()
		u := server(t, func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			c.Read(r.Context())
			c.Close(4001, "go away")
		})
		start := time.Now()
		r := wscat(t, bin, "", "-send", "hello", "-wait", "1m", u)
		check(t, r, 3, "", `server closed the connection: status 4001, reason "go away"`)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %v to notice the server closed", d)
		}
	})

	// A refused handshake gives exit status 1, with the HTTP status and
	// the server's explanation.
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		u := server(t, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "members only", http.StatusForbidden)
		})
		check(t, wscat(t, bin, "", u), 1, "", "HTTP 403", "server said: members only")
		// The library's own same-origin check refuses a foreign page.
		u = server(t, echo(nil))
		check(t, wscat(t, bin, "", "-origin", "https://evil.example", u), 1, "", "HTTP 403", "cross-origin")
	})

	// Subprotocols are offered as given, repeated or comma-separated.
	t.Run("subprotocol", func(t *testing.T) {
		t.Parallel()
		u := server(t, func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"chat.v2"}})
			if err != nil {
				return
			}
			defer c.CloseNow()
			if c.Subprotocol() == "" {
				c.Close(websocket.StatusPolicyViolation, "speak chat.v2")
				return
			}
			c.Write(r.Context(), websocket.MessageText, []byte(c.Subprotocol()))
			c.Read(r.Context())
		})
		check(t, wscat(t, bin, "", u), 3, "", "status 1008 (policy violation), reason \"speak chat.v2\"")
		check(t, wscat(t, bin, "", "-subprotocol", "chat.v1, chat.v2", "-subprotocol", "chat.v3", u), 0, "chat.v2\n", `subprotocol "chat.v2"`)
	})

	// -H headers reach the server.
	t.Run("headers", func(t *testing.T) {
		t.Parallel()
		got := make(chan http.Header, 1)
		echoer := echo(nil)
		u := server(t, func(w http.ResponseWriter, r *http.Request) {
			got <- r.Header.Clone()
			echoer(w, r)
		})
		r := wscat(t, bin, "", "-H", "Authorization: Bearer abc", "-H", "X-Trace:  1", "-H", "X-Trace: 2", u)
		check(t, r, 0, "")
		h := <-got
		if h.Get("Authorization") != "Bearer abc" || strings.Join(h.Values("X-Trace"), ",") != "1,2" {
			t.Errorf("server got headers %v", h)
		}
	})

	// Binary messages are printed in hex, or appended to -binary-out.
	t.Run("binary", func(t *testing.T) {
		t.Parallel()
		u := server(t, func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			c.Write(r.Context(), websocket.MessageBinary, []byte{0xde, 0xad, 0xbe, 0xef})
			c.Write(r.Context(), websocket.MessageText, []byte("text"))
			c.Read(r.Context())
		})
		check(t, wscat(t, bin, "", u), 0, "deadbeef\ntext\n")
		file := filepath.Join(t.TempDir(), "out.bin")
		check(t, wscat(t, bin, "", "-binary-out", file, u), 0, "text\n")
		check(t, wscat(t, bin, "", u, "-binary-out", file), 0, "text\n")
		if b, err := os.ReadFile(file); !bytes.Equal(b, []byte("\xde\xad\xbe\xef\xde\xad\xbe\xef")) {
			t.Errorf("-binary-out file holds %x, %v", b, err)
		}
	})

	// -show-ping reports the server's pings; -ping measures round trips.
	t.Run("ping", func(t *testing.T) {
		t.Parallel()
		u := server(t, func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			// Keep reading, so that the pong is seen.
			go func() {
				for {
					if _, _, err := c.Read(r.Context()); err != nil {
						return
					}
				}
			}()
			if err := c.Ping(r.Context()); err != nil {
				return
			}
			c.Close(websocket.StatusNormalClosure, "pinged")
		})
		r := wscat(t, bin, "", "-show-ping", "-send", "x", "-wait", "1m", u)
		check(t, r, 0, "", "ping received", `server closed the connection: status 1000 (normal closure), reason "pinged"`)

		u = server(t, echo(nil))
		r = wscat(t, bin, "", "-ping", "20ms", "-send", "x", "-wait", "300ms", u)
		check(t, r, 0, "x\n", "pong after")
	})

	// wss:// works, verifying certificates unless -insecure says not to.
	t.Run("tls", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewTLSServer(echo(nil))
		t.Cleanup(srv.Close)
		u := "wss" + strings.TrimPrefix(srv.URL, "https")
		check(t, wscat(t, bin, "", u), 1, "", "certificate")
		check(t, wscat(t, bin, "secure\n", "-insecure", u), 0, "secure\n")
	})

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		check(t, wscat(t, bin, "", "ws://"+ln.Addr().String()+"/"), 1, "", "connection refused")
	})
}

// Bad usage gives exit status 2 before anything is dialled.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"ws://a/", "ws://b/"},
		{"http://127.0.0.1/"},
		{"-H", "no colon", "ws://a/"},
		{"-wait", "1s", "ws://a/"},
		{"-ping", "-1s", "ws://a/"},
		{"-no-such-flag", "ws://a/"},
		{"-binary-out", t.TempDir(), "ws://a/"},
	} {
		var stdout, stderr bytes.Buffer
		if got := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); got != 2 {
			t.Errorf("wscat %q: exit status %d, want 2", args, got)
		}
		if stdout.Len() != 0 || stderr.Len() == 0 {
			t.Errorf("wscat %q: stdout %q, stderr %q", args, stdout.String(), stderr.String())
		}
	}
}
