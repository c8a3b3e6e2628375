package websocket

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// keepAlive is a connection's keepalive state: a timer that alternately
// sends a ping and checks that a pong came back.
type keepAlive struct {
	mu       sync.Mutex
	timer    *time.Timer
	interval time.Duration
	timeout  time.Duration
	awaiting atomic.Bool // a keepalive ping is out and no pong has come since
	failed   atomic.Bool // the peer stopped answering; the connection was closed
}

// SetKeepAlive makes the connection send a ping every interval and close
// itself when no pong arrives within timeout of one, or when a ping cannot
// even be sent within timeout because a write is stuck on a peer that
// stopped reading. Reads and writes
// pending on a connection closed this way fail with an error saying so.
// An interval of 0 or less turns keepalive off.
//
// Keepalive runs on timers, not a goroutine of its own. Pongs are seen only
// while a goroutine reads from the connection (see [Conn.CloseRead] for an
// application that only writes).
func (c *Conn) SetKeepAlive(interval, timeout time.Duration) {
	ka := &c.keepAlive
	ka.mu.Lock()
	defer ka.mu.Unlock()
	if ka.timer != nil {
		ka.timer.Stop()
		ka.timer = nil
	}
	ka.awaiting.Store(false)
	if interval <= 0 {
		return
	}
	ka.interval, ka.timeout = interval, min(timeout, interval)
	if ka.timeout <= 0 {
		ka.timeout = interval
	}
	ka.timer = time.AfterFunc(interval, c.keepAlivePing)
}

// keepAlivePing runs on the timer: it sends a ping and schedules the check
// for its pong.
func (c *Conn) keepAlivePing() {
	ka := &c.keepAlive
	ka.mu.Lock()
	timeout := ka.timeout
	ka.mu.Unlock()
	ka.awaiting.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := c.writeControl(ctx, OpPing, nil)
	cancel()
	switch {
	case err == nil || c.onlyReadsLeft():
		// A ping that the peer's leaving stopped is treated as sent:
		// no pong will come, so the check closes the connection unless
		// a reader, finding the end of what the peer sent, does first.
		ka.schedule(timeout, c.keepAliveCheck)
	case isTimeout(err):
		// The ping could not even be sent within the timeout (a write
		// is stuck on a peer that stopped reading): no pong can come
		// within it either.
		ka.failed.Store(true)
		c.teardown()
	}
	// Any other error means the connection is closing or closed.
}

// keepAliveCheck runs a timeout after a ping: it closes the connection if no
// pong came, and otherwise schedules the next ping.
func (c *Conn) keepAliveCheck() {
	ka := &c.keepAlive
	if ka.awaiting.Load() {
		ka.failed.Store(true)
		c.teardown()
		return
	}
	ka.mu.Lock()
	rest := ka.interval - ka.timeout
	ka.mu.Unlock()
	ka.schedule(rest, c.keepAlivePing)
}

// schedule runs f after d unless keepalive was turned off meanwhile.
func (ka *keepAlive) schedule(d time.Duration, f func()) {
	ka.mu.Lock()
	defer ka.mu.Unlock()
	if ka.timer != nil {
		ka.timer = time.AfterFunc(d, f)
	}
}

// keepAliveError describes a connection keepalive closed.
func (c *Conn) keepAliveError() error {
	if !c.keepAlive.failed.Load() {
		return nil
	}
	c.keepAlive.mu.Lock()
	defer c.keepAlive.mu.Unlock()
	return fmt.Errorf("no pong within the keepalive timeout of %v", c.keepAlive.timeout)
}

// stopKeepAlive stops the timer when the connection closes.
func (c *Conn) stopKeepAlive() {
	ka := &c.keepAlive
	ka.mu.Lock()
	if ka.timer != nil {
		ka.timer.Stop()
		ka.timer = nil
	}
	ka.mu.Unlock()
}
