// Package leakcheck fails a test binary that leaves goroutines running this
// module's code behind: a connection, server or timer nobody closed.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs the tests and, if they passed, waits up to five seconds for
// every goroutine in this module's code to end, failing the run with their
// stacks if some do not. Call it from TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var leaked []string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if leaked = goroutines(); len(leaked) == 0 {
				break
			}
		}
		if len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "goroutine leak: %d goroutines still run this module's code:\n\n%s\n",
				len(leaked), strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// goroutines returns the stacks of goroutines, other than TestMain's, that
// are in code of this module. Goroutines of the runtime and the testing
// package (a fuzzer's signal handler, say) are not leaks of ours, nor are the
// poller that AwaitMessage starts once for the process and the few
// goroutines that wait to serve awaiting connections.
func goroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "duplex-go/websocket") && !strings.Contains(g, "TestMain") &&
			!strings.Contains(g, "internal/leakcheck") && !strings.Contains(g, "websocket.(*poller).run") &&
			!(strings.Contains(g, "websocket.awaitWorker") && !strings.Contains(g, "serveAwait")) {
			leaked = append(leaked, g)
		}
	}
	return leaked
}
