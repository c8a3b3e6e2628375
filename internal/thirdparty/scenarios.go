package thirdparty

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// scale says how long each measurement lasts and how many connections the
// large scenarios open: the comparison uses the numbers, the smoke
// test a small fraction of them.
type scale struct {
	warmup      time.Duration // traffic before the measured interval
	duration    time.Duration // the measured interval
	manyConns   int           // the rows that say 1000 connections
	idleConns   int           // the idle-connection row
	verifyEvery int           // one compressed echo in this many is inflated and compared
}

// row is one line of the table.
type row struct {
	label        string
	unit         string
	higherBetter bool
	// extra marks a figure shown in a table of its own, after the issue's
	// rows: the server CPU time per echo behind each throughput row, which
	// depends less on how the shared machine schedules the processes.
	extra bool
}

// scenario measures one or more rows for one library at a time.
type scenario struct {
	name    string // for -scenarios
	deflate bool   // the server enables permessage-deflate
	rows    []row
	run     func(e *runEnv) ([]float64, error) // a figure per row
}

// runEnv is what a scenario gets for one measurement.
type runEnv struct {
	lib   string
	srv   *child
	scale scale
	logf  func(format string, args ...any)
}

// scenarios lists the rows of issue #7, in the order of its table.
var scenarios = []scenario{
	echoScenario("echo1k", row{label: "1 KiB echoes/s, 64 conns pipelined (W=16)", unit: "echoes/s", higherBetter: true},
		jsonText(1024), false, func(scale) int { return 64 }, 16, echoRate),
	echoScenario("cpu1k", row{label: "server CPU per 1M 1 KiB echoes, 1000 conns pipelined (W=8)", unit: "CPU s", higherBetter: false},
		jsonText(1024), false, func(s scale) int { return s.manyConns }, 8, cpuPerMillion),
	echoScenario("echo16", row{label: "16 B echoes/s, 1000 conns pipelined (W=8)", unit: "echoes/s", higherBetter: true},
		newMessage([]byte("0123456789abcdef"), opText, false), false, func(s scale) int { return s.manyConns }, 8, echoRate),
	echoScenario("bin64k", row{label: "64 KiB binary MB/s, 16 conns pipelined (W=4)", unit: "MB/s", higherBetter: true},
		newMessage(randomBytes(64<<10), opBinary, false), false, func(scale) int { return 16 }, 4, megabytesPerSecond),
	echoScenario("bin1m", row{label: "1 MiB binary MB/s, 1 conn (W=1)", unit: "MB/s", higherBetter: true},
		newMessage(randomBytes(1<<20), opBinary, false), false, func(scale) int { return 1 }, 1, megabytesPerSecond),
	{
		name: "idle",
		rows: []row{
			{label: "idle conn: server RSS KiB/conn", unit: "KiB", higherBetter: false},
			{label: "idle conn: server live heap KiB/conn", unit: "KiB", higherBetter: false},
		},
		run: runIdle,
	},
	{
		name: "handshake",
		rows: []row{{label: "server CPU per handshake (connect+upgrade+close, 64 concurrent)", unit: "µs"}},
		run:  runHandshakes,
	},
	echoScenario("deflate1k", row{label: "permessage-deflate 1 KiB JSON echoes/s, 64 conns (W=16)", unit: "echoes/s", higherBetter: true},
		newMessage(jsonText(1024).payload, opText, true), true, func(scale) int { return 64 }, 16, echoRate),
}

// jsonText is a text message of exactly n bytes of varied JSON, the kind
// of payload WebSocket APIs carry.
func jsonText(n int) *message {
	rng := rand.New(rand.NewPCG(7, 7))
	symbols := []string{"ACME", "GLOBX", "INITECH", "HOOLI", "UMBRL", "STARK", "WAYNE"}
	var b strings.Builder
	b.WriteString("[")
	for {
		item := fmt.Sprintf(`{"id":%d,"symbol":%q,"price":%.2f,"volume":%d,"ts":%d},`,
			rng.IntN(1e6), symbols[rng.IntN(len(symbols))], rng.Float64()*1000, rng.IntN(1e5), 1700000000000+rng.Int64N(1e9))
		if b.Len()+len(item)+1 > n {
			break
		}
		b.WriteString(item)
	}
	s := strings.TrimSuffix(b.String(), ",")
	s += strings.Repeat(" ", n-len(s)-1) + "]"
	return newMessage([]byte(s), opText, false)
}

// randomBytes returns n bytes that are the same on every run.
func randomBytes(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// echoResult is what a pipelined echo measurement finds.
type echoResult struct {
	echoes     int64
	perSecond  float64 // echoes
	bytesPerS  float64 // payload bytes echoed, one direction
	serverCPU  time.Duration
	serverLoad float64 // server CPU seconds per second of the interval
}

func echoRate(r echoResult) float64           { return r.perSecond }
func megabytesPerSecond(r echoResult) float64 { return r.bytesPerS / 1e6 }
func cpuPerMillion(r echoResult) float64 {
	return r.serverCPU.Seconds() / float64(r.echoes) * 1e6
}

// echoScenario is a scenario that keeps window messages m outstanding on
// each of conns connections and reports metric.
func echoScenario(name string, r row, m *message, deflate bool, conns func(scale) int, window int, metric func(echoResult) float64) scenario {
	return scenario{
		name:    name,
		deflate: deflate,
		rows:    []row{r, {label: "server CPU per echo: " + name, unit: "µs", extra: true}},
		run: func(e *runEnv) ([]float64, error) {
			res, err := measureEcho(e, m, conns(e.scale), window)
			if err != nil {
				return nil, err
			}
			return []float64{metric(res), float64(res.serverCPU.Nanoseconds()) / float64(res.echoes) / 1e3}, nil
		},
	}
}

func measureEcho(e *runEnv, m *message, conns, window int) (echoResult, error) {
	var res echoResult
	l, err := startLoad(e.srv.addr, m, conns, window, e.scale.verifyEvery)
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			l.stop(5 * time.Second)
		}
	}()
	time.Sleep(e.scale.warmup)
	s0, err := e.srv.stats(false)
	if err != nil {
		return res, err
	}
	n0, t0, g0 := l.echoes(), time.Now(), selfCPU()
	time.Sleep(e.scale.duration)
	s1, err := e.srv.stats(false)
	if err != nil {
		return res, err
	}
	n1, t1, g1 := l.echoes(), time.Now(), selfCPU()
	stopped = true
	if err := l.stop(15 * time.Second); err != nil {
		return res, err
	}
	res.echoes = n1 - n0
	if res.echoes <= 0 {
		return res, fmt.Errorf("no echoes in %v", t1.Sub(t0))
	}
	dt := t1.Sub(t0).Seconds()
	res.perSecond = float64(res.echoes) / dt
	res.bytesPerS = res.perSecond * float64(len(m.payload))
	res.serverCPU = s1.cpu - s0.cpu
	res.serverLoad = res.serverCPU.Seconds() / dt
	e.logf("%-8s %d conns: %.0f echoes/s, %.1f MB/s, server CPU %.2f cores, %.2f µs and %.2f reads + %.2f writes per echo; load generator %.2f cores",
		e.lib, conns, res.perSecond, res.bytesPerS/1e6, res.serverLoad,
		float64(res.serverCPU.Nanoseconds())/float64(res.echoes)/1e3,
		float64(s1.syscr-s0.syscr)/float64(res.echoes), float64(s1.syscw-s0.syscw)/float64(res.echoes),
		(g1-g0).Seconds()/dt)
	return res, nil
}

// runIdle opens the idle connections, echoes one short text message on
// each, and compares the server's memory after a GC with before.
func runIdle(e *runEnv) ([]float64, error) {
	n := e.scale.idleConns
	m := newMessage([]byte("hello, idle conn"), opText, false)
	s0, err := e.srv.stats(true)
	if err != nil {
		return nil, err
	}
	conns, err := dialMany(e.srv.addr, n, false, 1<<10, func(c *wsConn) error { return c.echo(m) })
	if err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond) // let every handler block in its read
	s1, err := e.srv.stats(true)
	if err != nil {
		finishAll(conns, 10*time.Second)
		return nil, err
	}
	if err := finishAll(conns, 10*time.Second); err != nil {
		return nil, err
	}
	perConn := func(d int64) float64 { return float64(d) / float64(n) / 1024 }
	rss := float64(s1.rssKB-s0.rssKB) / float64(n)
	heap := perConn(s1.heapAlloc - s0.heapAlloc)
	e.logf("%-8s %d idle conns: RSS %.2f KiB/conn, heap alloc %.2f KiB/conn, heap in use %.2f KiB/conn, stacks %.2f KiB/conn, %.2f goroutines/conn",
		e.lib, n, rss, heap, perConn(s1.heapInuse-s0.heapInuse), perConn(s1.stackInuse-s0.stackInuse),
		float64(s1.goroutines-s0.goroutines)/float64(n))
	return []float64{rss, heap}, nil
}

// runHandshakes opens and closes connections from 64 goroutines and
// divides the server's CPU time by the handshakes completed.
func runHandshakes(e *runEnv) ([]float64, error) {
	var count atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- handshakes(e.srv.addr, 64, &count, stop) }()
	fail := func(err error) ([]float64, error) {
		close(stop)
		<-done
		return nil, err
	}
	time.Sleep(e.scale.warmup)
	s0, err := e.srv.stats(false)
	if err != nil {
		return fail(err)
	}
	c0, t0 := count.Load(), time.Now()
	time.Sleep(e.scale.duration)
	s1, err := e.srv.stats(false)
	if err != nil {
		return fail(err)
	}
	c1, t1 := count.Load(), time.Now()
	close(stop)
	if err := <-done; err != nil {
		return nil, err
	}
	n := c1 - c0
	if n <= 0 {
		return nil, fmt.Errorf("no handshakes in %v", t1.Sub(t0))
	}
	cpu := s1.cpu - s0.cpu
	perHandshake := float64(cpu.Nanoseconds()) / float64(n) / 1e3
	e.logf("%-8s %.0f handshakes/s, server CPU %.2f cores, %.1f µs per handshake",
		e.lib, float64(n)/t1.Sub(t0).Seconds(), cpu.Seconds()/t1.Sub(t0).Seconds(), perHandshake)
	return []float64{perHandshake}, nil
}

// selfCPU returns the CPU time this process, the load generator, has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
