// Package interop starts the real WebSocket peers that the interop tests
// talk to (node_peer.js, python_peer.py, headless Chromium) and reads what
// they report. Every process runs in its own process group, is bounded in
// time and is ended by its process group id, never by name.
package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// TB is the part of [testing.TB] this package needs.
type TB interface {
	Helper()
	Cleanup(func())
	Logf(format string, args ...any)
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// InstallHint says how to get the peers.
const InstallHint = "install the interop peers with: sh internal/interop/install.sh"

// Missing ends a test that needs a peer that is not installed: it skips
// locally and fails on CI (environment CI=true), where the peers must be
// present.
func Missing(t TB, what string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s not available (%v); %s", what, err, InstallHint)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s", msg)
	}
	t.Skipf("%s", msg)
}

// Dir returns the absolute path of this directory, where the peer scripts
// live. Tests of the root package run with the module root as their working
// directory.
func Dir() (string, error) {
	for _, d := range []string{"internal/interop", "."} {
		if _, err := os.Stat(filepath.Join(d, "node_peer.js")); err == nil {
			return filepath.Abs(d)
		}
	}
	return "", errors.New("cannot find internal/interop/node_peer.js from the working directory")
}

// PythonPath is the interpreter that sees Debian's python3-websockets.
const PythonPath = "/usr/bin/python3"

// A Kind is a scripted peer.
type Kind string

// The scripted peers.
const (
	Node   Kind = "node"
	Python Kind = "python"
)

// checks memoizes the availability checks: Kind or "chromium" -> *checkResult.
var checks sync.Map

type checkResult struct {
	once sync.Once
	desc string // what was found, e.g. "node v20.20.2, ws 8.23.0"
	err  error
}

func check(key string, f func() (string, error)) (string, error) {
	v, _ := checks.LoadOrStore(key, &checkResult{})
	r := v.(*checkResult)
	r.once.Do(func() { r.desc, r.err = f() })
	return r.desc, r.err
}

// output runs a short command, bounded in time, and returns its trimmed
// standard output.
func output(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	OwnGroup(cmd)
	cmd.Cancel = func() error { return KillGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%v: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Available reports whether peer k can run, with its version.
func Available(k Kind) (string, error) {
	return check(string(k), func() (string, error) {
		dir, err := Dir()
		if err != nil {
			return "", err
		}
		switch k {
		case Node:
			if _, err := exec.LookPath("node"); err != nil {
				return "", err
			}
			pkg := filepath.Join(dir, "node_modules", "ws", "package.json")
			v, err := output("node", "-p", "process.version + ', ws ' + require(process.argv[1]).version", pkg)
			if err != nil {
				return "", err
			}
			return "node " + v, nil
		case Python:
			v, err := output(PythonPath, "-c", "import sys, websockets; print(sys.version.split()[0] + ', websockets ' + websockets.__version__)")
			if err != nil {
				return "", err
			}
			return "python " + v, nil
		}
		return "", fmt.Errorf("unknown peer %q", k)
	})
}

// Require skips or fails t (see [Missing]) unless peer k can run, and
// returns the peer's version.
func Require(t TB, k Kind) string {
	t.Helper()
	v, err := Available(k)
	if err != nil {
		Missing(t, string(k)+" peer", err)
	}
	return v
}

// Event is one JSON line a peer script printed; see README.md.
type Event struct {
	Event      string            `json:"event"`
	Port       int               `json:"port"`
	Path       string            `json:"path"`
	Protocol   string            `json:"protocol"`
	Extensions string            `json:"extensions"`
	Headers    map[string]string `json:"headers"`
	Size       int               `json:"size"`
	Code       int               `json:"code"`
	Reason     string            `json:"reason"`
	Name       string            `json:"name"`
	OK         bool              `json:"ok"`
	MS         int               `json:"ms"`
	Error      string            `json:"error"`

	Line string `json:"-"` // as printed
}

// Process is a running peer.
type Process struct {
	t     TB
	kind  Kind // "" for Chromium
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *os.File // read end of stdout; nil when stdout is not parsed
	start time.Time

	mu      sync.Mutex
	events  []Event
	changed chan struct{} // closed and replaced when events grow or stdout ends
	eof     bool
	stderr  tailBuffer

	exited  chan struct{} // closed when Wait has returned
	waitErr error
	scanned chan struct{} // closed when stdout is read to its end

	stopOnce sync.Once
}

// Options configures [Start].
type Options struct {
	// Args is the command line, program first.
	Args []string
	// Parse reads stdout as JSON lines; otherwise stdout goes with stderr
	// into the log kept for failure messages.
	Parse bool
	// Grace is how long Stop waits for the process to exit after closing
	// its standard input before it kills the process group. 0 kills at
	// once.
	Grace time.Duration
}

// Start starts a process in its own process group, with a standard input
// it holds open, and registers its Stop with t.Cleanup.
func Start(t TB, name string, o Options) *Process {
	t.Helper()
	p := &Process{
		t:       t,
		name:    name,
		changed: make(chan struct{}),
		exited:  make(chan struct{}),
		scanned: make(chan struct{}),
		start:   time.Now(),
	}
	p.stderr.max = 64 << 10
	cmd := exec.Command(o.Args[0], o.Args[1:]...)
	OwnGroup(cmd)
	// The stderr copy must not wait for grandchildren that keep the pipe
	// open after the process group is gone (Chromium's crash handler runs
	// in a session of its own).
	cmd.WaitDelay = 2 * time.Second
	cmd.Stderr = &p.stderr
	var w *os.File
	if o.Parse {
		r, pw, err := os.Pipe()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p.out, w = r, pw
		cmd.Stdout = pw
	} else {
		cmd.Stdout = &p.stderr
		close(p.scanned)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p.stdin = stdin
	if err := cmd.Start(); err != nil {
		if w != nil {
			w.Close()
			p.out.Close()
		}
		t.Fatalf("%s: starting %q: %v", name, o.Args, err)
	}
	p.cmd = cmd
	if w != nil {
		w.Close() // the child has its copy
		go p.scan()
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	grace := o.Grace
	t.Cleanup(func() { p.stop(grace) })
	return p
}

// scan reads JSON lines from stdout until it ends.
func (p *Process) scan() {
	defer close(p.scanned)
	sc := bufio.NewScanner(p.out)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			ev = Event{Event: "unparsed"}
		}
		ev.Line = line
		p.mu.Lock()
		p.events = append(p.events, ev)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.eof = true
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// Kind returns which scripted peer p runs, or "" for another program.
func (p *Process) Kind() Kind { return p.kind }

// Events returns the lines printed so far.
func (p *Process) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// WaitEvent waits until the process has printed a line for which match
// returns true (looking at every line printed since it started), and
// returns it. It fails when stdout ends or ctx is done first.
func (p *Process) WaitEvent(ctx context.Context, match func(Event) bool) (Event, error) {
	seen := 0
	for {
		p.mu.Lock()
		evs, eof, changed := p.events, p.eof, p.changed
		p.mu.Unlock()
		for ; seen < len(evs); seen++ {
			if match(evs[seen]) {
				return evs[seen], nil
			}
		}
		if eof {
			return Event{}, fmt.Errorf("%s ended its output without the expected line\n%s", p.name, p.Log())
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("%s: waiting for a line: %w\n%s", p.name, ctx.Err(), p.Log())
		}
	}
}

// WaitListening waits for a server's "listening" line and returns the port.
func (p *Process) WaitListening(ctx context.Context) (int, error) {
	ev, err := p.WaitEvent(ctx, func(e Event) bool { return e.Event == "listening" })
	return ev.Port, err
}

// Exited is closed when the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitErr is how the process ended; valid after Exited is closed.
func (p *Process) ExitErr() error {
	<-p.exited
	return p.waitErr
}

// Log returns the process's stdout lines and the tail of its stderr, for
// failure messages.
func (p *Process) Log() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s (pid %d) stdout:\n", p.name, p.cmd.Process.Pid)
	for _, ev := range p.Events() {
		line := ev.Line
		if len(line) > 400 {
			line = line[:400] + "…"
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "--- %s stderr (tail):\n%s", p.name, p.stderr.String())
	return b.String()
}

// Stop ends the process: it closes standard input, waits up to grace for
// the process to exit, then kills its process group, and reaps it. It is
// called by t.Cleanup and may be called earlier.
func (p *Process) Stop(grace time.Duration) { p.stop(grace) }

func (p *Process) stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		p.stdin.Close()
		if grace > 0 {
			select {
			case <-p.exited:
			case <-time.After(grace):
			}
		}
		// Whatever of the group is still running goes, also when the
		// leader has exited (a process group outlives its leader).
		select {
		case <-p.exited:
		default:
			if err := KillGroup(p.cmd.Process.Pid); err != nil {
				p.t.Logf("%s: kill process group %d: %v", p.name, p.cmd.Process.Pid, err)
			}
		}
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.t.Logf("%s: pid %d not reaped 10 s after SIGKILL", p.name, p.cmd.Process.Pid)
		}
		if p.out != nil {
			select {
			case <-p.scanned:
			case <-time.After(2 * time.Second):
				// A stray descendant holds stdout open: stop reading.
			}
			p.out.Close()
			<-p.scanned
		}
	})
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cut {
		return "…" + string(t.b)
	}
	return string(t.b)
}

// script returns the command line that runs peer k's script with args.
func script(k Kind, args ...string) ([]string, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	switch k {
	case Node:
		return append([]string{"node", filepath.Join(dir, "node_peer.js")}, args...), nil
	case Python:
		return append([]string{PythonPath, filepath.Join(dir, "python_peer.py")}, args...), nil
	}
	return nil, fmt.Errorf("unknown peer %q", k)
}

// StartServer starts peer k's echo server on a loopback port with the given
// flags (--deflate, --tls-cert F --tls-key K, ...) and returns it with its
// port. The script's own timeout bounds it to timeout.
func StartServer(ctx context.Context, t TB, k Kind, timeout time.Duration, flags ...string) (*Process, int) {
	t.Helper()
	Require(t, k)
	args := append([]string{"server", "--port", "0", "--host", "127.0.0.1",
		"--timeout", fmt.Sprint(int(timeout.Seconds()))}, flags...)
	argv, err := script(k, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	p := Start(t, string(k)+" server", Options{Args: argv, Parse: true, Grace: 3 * time.Second})
	p.kind = k
	port, err := p.WaitListening(ctx)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return p, port
}

// StartClient starts peer k's self-checking client against url with the
// given flags (--deflate, --insecure, ...). Wait for its "result" line.
func StartClient(t TB, k Kind, url string, timeout time.Duration, flags ...string) *Process {
	t.Helper()
	Require(t, k)
	args := append([]string{"client", "--url", url, "--timeout", fmt.Sprint(int(timeout.Seconds()))}, flags...)
	argv, err := script(k, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	p := Start(t, string(k)+" client", Options{Args: argv, Parse: true, Grace: 3 * time.Second})
	p.kind = k
	return p
}

// Chromium returns the path of a Chromium binary and its version.
func Chromium() (path, version string, err error) {
	version, err = check("chromium", func() (string, error) {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
			if path, err := exec.LookPath(name); err == nil {
				v, err := output(path, "--version")
				if err != nil {
					return "", err
				}
				// Debian's wrapper script prints a shell error first.
				if i := strings.LastIndex(v, "\n"); i >= 0 {
					v = v[i+1:]
				}
				return path + "\x00" + v, nil
			}
		}
		return "", errors.New("no chromium, chromium-browser or google-chrome on PATH")
	})
	if err != nil {
		return "", "", err
	}
	path, version, _ = strings.Cut(version, "\x00")
	return path, version, nil
}

// StartChromium opens url in a headless Chromium with a fresh profile. The
// browser never exits by itself: Stop (or the test's cleanup) kills its
// process group. insecure makes it accept any certificate.
func StartChromium(t TB, url string, insecure bool) *Process {
	t.Helper()
	path, _, err := Chromium()
	if err != nil {
		Missing(t, "Chromium", err)
	}
	// Not t.TempDir: the profile is removed after the browser is killed,
	// and a straggler writing into it must not fail the test.
	profile, err := os.MkdirTemp("", "duplex-chromium-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 10; i++ {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	args := []string{path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-extensions",
		"--proxy-server=http://127.0.0.1:9", "--user-data-dir=" + profile}
	if insecure {
		args = append(args, "--ignore-certificate-errors")
	}
	args = append(args, url)
	return Start(t, "chromium", Options{Args: args})
}
