package thirdparty

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	flagRounds    = flag.Int("rounds", envInt("DUPLEX_COMPARE_ROUNDS", 5), "rounds per scenario; the table shows medians")
	flagDuration  = flag.Duration("duration", envDuration("DUPLEX_COMPARE_DURATION", 1500*time.Millisecond), "measured interval of each measurement")
	flagWarmup    = flag.Duration("warmup", envDuration("DUPLEX_COMPARE_WARMUP", 500*time.Millisecond), "traffic before each measured interval")
	flagScenarios = flag.String("scenarios", os.Getenv("DUPLEX_COMPARE_SCENARIOS"), "comma-separated scenarios to run (default all): echo1k,cpu1k,echo16,bin64k,bin1m,idle,handshake,deflate1k")
	flagLibs      = flag.String("libs", os.Getenv("DUPLEX_COMPARE_LIBS"), "comma-separated libraries (default all); the first is the baseline")
	flagIdleConns = flag.Int("idleconns", envInt("DUPLEX_COMPARE_IDLE_CONNS", 10000), "connections in the idle row")
	flagPin       = flag.Bool("pin", os.Getenv("DUPLEX_COMPARE_PIN") != "0", "pin the servers and the load generator to separate CPUs with taskset")
	flagProfile   = flag.String("profile", os.Getenv("DUPLEX_COMPARE_PROFILE"), "TestProfile: directory for the server CPU profiles")
	flagProfLib   = flag.String("profilelib", "duplex", "TestProfile: the library to profile")
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

func TestMain(m *testing.M) {
	ChildMain() // does not return in a server process
	os.Exit(m.Run())
}

// smokeScale is small enough for every library to run every scenario in a
// few seconds, and checks every echo.
var smokeScale = scale{
	warmup:      50 * time.Millisecond,
	duration:    150 * time.Millisecond,
	manyConns:   40,
	idleConns:   40,
	verifyEvery: 1,
}

// TestSmoke runs every library, and duplex's servers that serve with
// AwaitMessage and behind duplex.Serve, through every scenario briefly, so that the harness cannot
// rot: each server must echo every message intact and close cleanly.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 56 server processes")
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for _, lib := range append(slices.Clone(libraries), "duplex-await", "duplex-serve") {
				o := compareOptions{scale: smokeScale, logf: t.Logf}
				vals, err := measureOnce(sc, lib, o)
				if err != nil {
					t.Errorf("%s: %v", lib, err)
					continue
				}
				for i, v := range vals {
					if !(v > 0) {
						t.Errorf("%s: %s = %v, want a positive figure", lib, sc.rows[i].label, v)
					}
				}
			}
		})
	}
}

// TestCompare measures the table of issue #7. It takes several minutes
// and only runs with DUPLEX_COMPARE=1:
//
//	DUPLEX_COMPARE=1 go test -run TestCompare -v -timeout 30m
func TestCompare(t *testing.T) {
	if os.Getenv("DUPLEX_COMPARE") != "1" {
		t.Skip("set DUPLEX_COMPARE=1 to run the comparison")
	}
	o := compareOptions{
		rounds: *flagRounds,
		scale: scale{
			warmup:      *flagWarmup,
			duration:    *flagDuration,
			manyConns:   1000,
			idleConns:   *flagIdleConns,
			verifyEvery: 64,
		},
		libs:      selectLibs(t),
		scenarios: selectScenarios(t),
		logf:      t.Logf,
	}
	t.Logf("machine: %d CPUs, %s, %s/%s, load average %s", runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, loadavg())
	t.Logf("libraries: %s", moduleVersions())
	if *flagPin {
		o.serverCPUs = pin(t)
	}
	if o.serverCPUs == "" {
		t.Logf("not pinned: servers and load generator share the CPUs")
	}
	start := time.Now()
	res, errs := compare(o)
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("%d rounds of %v (+%v warm-up) per library and scenario, took %v, load average now %s",
		o.rounds, o.scale.duration, o.scale.warmup, time.Since(start).Round(time.Second), loadavg())
	fmt.Printf("\n%s\n", res.table(o.scenarios, o.libs))
}

// TestProfile runs the chosen scenarios once against one library's server
// with a CPU profile (for idle, a heap profile of the idle connections),
// one file per scenario in -profile's directory:
//
//	DUPLEX_COMPARE=1 go test -run TestProfile -profile /tmp/prof -duration 5s
//	go tool pprof -top /tmp/prof/duplex-echo1k.pprof
func TestProfile(t *testing.T) {
	if os.Getenv("DUPLEX_COMPARE") != "1" || *flagProfile == "" {
		t.Skip("set DUPLEX_COMPARE=1 and -profile to profile a server")
	}
	if err := os.MkdirAll(*flagProfile, 0o755); err != nil {
		t.Fatal(err)
	}
	sc := scale{warmup: *flagWarmup, duration: *flagDuration, manyConns: 1000, idleConns: *flagIdleConns, verifyEvery: 64}
	cpus := ""
	if *flagPin {
		cpus = pin(t)
	}
	for _, s := range selectScenarios(t) {
		path, err := filepath.Abs(filepath.Join(*flagProfile, *flagProfLib+"-"+s.name+".pprof"))
		if err != nil {
			t.Fatal(err)
		}
		o := childOptions{deflate: s.deflate, cpus: cpus, cpuProfile: path}
		if s.name == "idle" {
			o.cpuProfile = ""
			o.memProfile = path
		}
		srv, err := startChild(*flagProfLib, o)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.run(&runEnv{lib: *flagProfLib, srv: srv, scale: sc, logf: t.Logf})
		srv.stop()
		if err != nil {
			t.Errorf("%s: %v", s.name, err)
			continue
		}
		t.Logf("wrote %s", path)
	}
}

// pin puts this process, the load generator, on the first half of the
// CPUs and returns the second half for the servers, or "" if it cannot.
func pin(t *testing.T) string {
	gen, srv := splitCPUs()
	if srv == "" {
		t.Logf("pinning: no taskset or a single CPU; not pinned")
		return ""
	}
	if err := pinProcess(gen); err != nil {
		t.Logf("pinning failed: %v", err)
		return ""
	}
	procs := runtime.GOMAXPROCS(len(strings.Split(gen, ",")))
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		all := strings.Join([]string{gen, srv}, ",")
		if err := pinProcess(all); err != nil {
			t.Logf("unpinning: %v", err)
		}
	})
	t.Logf("pinned: load generator on CPU %s (GOMAXPROCS %d), servers on CPU %s", gen, runtime.GOMAXPROCS(0), srv)
	return srv
}

func selectLibs(t *testing.T) []string {
	if *flagLibs == "" {
		return libraries
	}
	libs := strings.Split(*flagLibs, ",")
	for _, lib := range libs {
		if servers[lib] == nil {
			t.Fatalf("unknown library %q", lib)
		}
	}
	return libs
}

func selectScenarios(t *testing.T) []scenario {
	if *flagScenarios == "" {
		return scenarios
	}
	var out []scenario
	for _, name := range strings.Split(*flagScenarios, ",") {
		i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == name })
		if i < 0 {
			t.Fatalf("unknown scenario %q", name)
		}
		out = append(out, scenarios[i])
	}
	return out
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// moduleVersions lists the libraries' versions from go.mod.
func moduleVersions() string {
	b, err := os.ReadFile("go.mod")
	if err != nil {
		return "?"
	}
	var s []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, lib := range []string{"gorilla/websocket ", "coder/websocket ", "gobwas/ws ", "lxzan/gws "} {
			if strings.Contains(line, lib) {
				s = append(s, strings.TrimSpace(line))
			}
		}
	}
	return strings.Join(s, ", ")
}
