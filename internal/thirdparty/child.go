package thirdparty

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Each echo server runs in a child process, the test binary started again
// with envServer naming the library, so that its CPU time and memory are
// its own and not the load generator's. The parent talks to it over stdin
// and stdout, one line each way:
//
//	child:  addr 127.0.0.1:port
//	parent: stats | gc | quit      (gc collects garbage first)
//	child:  stats cpu_ns=… heap_alloc=… … errors=… syscr=… syscw=…
//
// The child exits when told to or when stdin closes, so it does not
// outlive the parent.
const (
	envServer     = "DUPLEX_COMPARE_SERVER"     // the library to serve
	envDeflate    = "DUPLEX_COMPARE_DEFLATE"    // "1" enables permessage-deflate
	envCPUProfile = "DUPLEX_COMPARE_CPUPROFILE" // a file for the server's CPU profile
	envMemProfile = "DUPLEX_COMPARE_MEMPROFILE" // a file for the heap profile, written at each gc
)

// ChildMain runs the echo server when the process was started as a
// child, and reports whether it was. A TestMain calls it first.
func ChildMain() bool {
	lib := os.Getenv(envServer)
	if lib == "" {
		return false
	}
	if err := runChild(lib); err != nil {
		fmt.Fprintf(os.Stderr, "%s server: %v\n", lib, err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

func runChild(lib string) error {
	start, ok := servers[lib]
	if !ok {
		return fmt.Errorf("no server for library %q", lib)
	}
	var errCount atomic.Int64
	var stopping atomic.Bool
	report := func(err error) {
		if stopping.Load() {
			return
		}
		if n := errCount.Add(1); n <= 5 {
			fmt.Fprintf(os.Stderr, "%s server: connection error: %v\n", lib, err)
		}
	}
	if path := os.Getenv(envCPUProfile); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	srv, err := start(serverOptions{deflate: os.Getenv(envDeflate) == "1", report: report})
	if err != nil {
		return err
	}
	defer srv.stop()
	fmt.Printf("addr %s\n", srv.addr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "stats":
			printStats(errCount.Load())
		case "gc":
			runtime.GC()
			debug.FreeOSMemory()
			if err := writeHeapProfile(os.Getenv(envMemProfile)); err != nil {
				return err
			}
			printStats(errCount.Load())
		case "quit":
			stopping.Store(true)
			return nil
		}
	}
	stopping.Store(true)
	return nil
}

func writeHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

// serverStats is what a child reports about itself.
type serverStats struct {
	cpu        time.Duration // user and system time so far
	heapAlloc  int64         // bytes of live and not yet collected objects
	heapInuse  int64         // bytes in in-use heap spans
	stackInuse int64
	rssKB      int64 // VmRSS
	goroutines int64
	errors     int64 // connection errors reported by the server
	syscr      int64 // read system calls so far
	syscw      int64 // write system calls so far
}

func printStats(errs int64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("stats cpu_ns=%d heap_alloc=%d heap_inuse=%d stack_inuse=%d rss_kb=%d goroutines=%d errors=%d syscr=%d syscw=%d\n",
		cpu, ms.HeapAlloc, ms.HeapInuse, ms.StackInuse, procField("status", "VmRSS:"), runtime.NumGoroutine(), errs,
		procField("io", "syscr:"), procField("io", "syscw:"))
}

// procField returns a number from a /proc/self file: VmRSS in KiB from
// status, the counts of read and write system calls from io.
func procField(file, name string) int64 {
	b, err := os.ReadFile("/proc/self/" + file)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return -1
}

func parseStats(line string) (serverStats, error) {
	var s serverStats
	rest, ok := strings.CutPrefix(line, "stats ")
	if !ok {
		return s, fmt.Errorf("unexpected line from server: %q", line)
	}
	for _, field := range strings.Fields(rest) {
		k, v, _ := strings.Cut(field, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("bad stats field %q", field)
		}
		switch k {
		case "cpu_ns":
			s.cpu = time.Duration(n)
		case "heap_alloc":
			s.heapAlloc = n
		case "heap_inuse":
			s.heapInuse = n
		case "stack_inuse":
			s.stackInuse = n
		case "rss_kb":
			s.rssKB = n
		case "goroutines":
			s.goroutines = n
		case "errors":
			s.errors = n
		case "syscr":
			s.syscr = n
		case "syscw":
			s.syscw = n
		}
	}
	return s, nil
}

// child is a running server process, seen from the parent.
type child struct {
	lib    string
	addr   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncBuffer
}

// childOptions says how to start a server process.
type childOptions struct {
	deflate    bool
	cpus       string // a taskset CPU list to pin the server to; "" for none
	cpuProfile string // a file for a CPU profile of the server
	memProfile string // a file for a heap profile, written at each garbage collection asked for
}

// startChild starts the server for lib in a child process and waits for
// its address.
func startChild(lib string, o childOptions) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{exe, "-test.run=^$"}
	if o.cpus != "" {
		args = append([]string{"taskset", "-c", o.cpus}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), envServer+"="+lib)
	if o.deflate {
		cmd.Env = append(cmd.Env, envDeflate+"=1")
	}
	if o.cpuProfile != "" {
		cmd.Env = append(cmd.Env, envCPUProfile+"="+o.cpuProfile)
	}
	if o.memProfile != "" {
		cmd.Env = append(cmd.Env, envMemProfile+"="+o.memProfile)
	}
	// Should the parent die without closing stdin, the kernel kills the
	// child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &child{lib: lib, cmd: cmd, lines: make(chan string, 64), stderr: &syncBuffer{}}
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	line, err := c.expect("addr ", 20*time.Second)
	c.addr = strings.TrimPrefix(line, "addr ")
	if err != nil {
		c.kill()
		return nil, fmt.Errorf("starting the %s server: %w (stderr: %s)", lib, err, c.stderr.String())
	}
	return c, nil
}

// expect returns the next line from the server that starts with prefix,
// skipping any other output a library may print.
func (c *child) expect(prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				return "", errors.New("server process exited")
			}
			if strings.HasPrefix(line, prefix) {
				return line, nil
			}
		case <-t.C:
			return "", fmt.Errorf("no answer from the server process within %v", timeout)
		}
	}
}

// stats asks the server for its statistics, after a garbage collection
// when gc is set.
func (c *child) stats(gc bool) (serverStats, error) {
	cmd := "stats\n"
	if gc {
		cmd = "gc\n"
	}
	if _, err := io.WriteString(c.stdin, cmd); err != nil {
		return serverStats{}, err
	}
	line, err := c.expect("stats ", 30*time.Second)
	if err != nil {
		return serverStats{}, err
	}
	return parseStats(line)
}

// stop asks the server to exit, and kills it if it has not within five
// seconds.
func (c *child) stop() {
	io.WriteString(c.stdin, "quit\n")
	c.stdin.Close()
	done := make(chan struct{})
	go func() {
		c.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

func (c *child) kill() {
	c.cmd.Process.Kill()
	c.cmd.Wait()
}

// syncBuffer is a bytes.Buffer safe for a writer and readers in different
// goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
