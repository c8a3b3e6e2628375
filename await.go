package websocket

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds AwaitMessage: waiting for a connection's next message
// without a goroutine.
//
// A goroutine blocked in a read costs a stack of at least 4 KiB once it has
// done real work (the runtime does not shrink a stack parked in the network
// poller), more than everything else an idle Conn holds. An awaited
// connection instead has its socket watched by a poller shared by the
// process (poll_linux.go); when the socket turns readable, a goroutine is
// started that reads what arrived, answers control frames itself, and calls
// the application's function only once a data message has begun or the
// connection has ended. Where no poller can watch the connection, the
// function is called at once and its read waits as usual.

// awaitState is where a connection is in AwaitMessage's cycle.
type awaitState struct {
	mu     sync.Mutex
	f      func()      // what to call; guarded by mu
	state  awaitPhase  // guarded by mu
	closed bool        // teardown has begun: watch no more; guarded by mu
	timer  *time.Timer // ends the wait at the read deadline; made on first use
	poll   pollHandle  // the connection's registration with the poller
}

type awaitPhase uint8

const (
	awaitIdle    awaitPhase = iota // nobody awaits
	awaitLooking                   // a goroutine looks for input for f, or is about to
	awaitWatched                   // the poller watches the socket for f
	awaitCalling                   // f runs
	awaitAgain                     // f runs and asked for the next message
)

// AwaitMessage calls f, in a goroutine of its own, once the next message has
// begun to arrive or the connection has ended, so that f's read finds it
// without waiting. It returns at once. Meanwhile no goroutine waits for the
// connection: pings, pongs and the peer's Close frame are handled as they
// arrive, by a goroutine that runs only while there is input, and f is not
// called for them. An idle connection then costs about 3 KiB in all, against 7 KiB or
// more with a goroutine blocked in [Conn.Read].
//
// f should read the message (with [Conn.Read] or [Conn.Reader]) and, to
// serve the next one, call AwaitMessage again, typically as its last act;
// when it returns without doing so, the connection is no longer read. The
// error a read returns says when the connection has ended. One function
// value can serve every message:
//
//	var serve func()
//	serve = func() {
//		typ, msg, err := c.Read(ctx)
//		if err != nil {
//			c.CloseNow()
//			return
//		}
//		if c.Write(ctx, typ, msg) == nil {
//			c.AwaitMessage(serve)
//		}
//	}
//	c.AwaitMessage(serve)
//
// AwaitMessage is the connection's reader while it waits: do not read
// from another goroutine meanwhile. Calling it again before f runs
// replaces f. A read deadline set with [Conn.SetReadDeadline] before the
// call ends the wait: f runs then, and its read fails with the deadline.
// [Conn.SetKeepAlive] works as with a read loop, and is the way to notice a
// peer that vanished without closing. Close the connection with
// [Conn.Close] or [Conn.CloseNow]: one closed through [Conn.NetConn] while
// it awaits is not noticed.
//
// Connections are watched without a goroutine on Linux, for plain TCP and
// Unix sockets that the Conn owns itself; elsewhere (TLS, HTTP/2, a
// wrapped [net.Conn], other systems) f is called at once and its read
// waits as usual.
func (c *Conn) AwaitMessage(f func()) {
	a := c.await.Load()
	if a == nil {
		// Made on first use: most connections never await.
		c.await.CompareAndSwap(nil, new(awaitState))
		a = c.await.Load()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.f = f
	switch a.state {
	case awaitIdle:
		// Look at what is buffered, and start watching, from a
		// goroutine that takes the read lock: the caller may be a
		// reader itself.
		a.state = awaitLooking
		c.dispatch()
	case awaitCalling:
		a.state = awaitAgain
	}
	// Otherwise f replaces the function not yet called.
}

// serveAwait runs once the connection may have input for an awaiting
// application: it handles control frames until a data message has begun,
// then calls the application's function, or it has the socket watched again
// if nothing more is there.
func (c *Conn) serveAwait(a *awaitState) {
	for {
		_ = c.readLock.lock(context.Background(), nil)
		ready := c.messageAhead()
		if !ready {
			// The application has had every message: send what it
			// wrote in answer before going quiet.
			c.sendBeforeWait()
			ready = !c.watch(a)
		}
		c.readLock.unlock()
		if !ready {
			return
		}
		a.mu.Lock()
		f := a.f
		a.state = awaitCalling
		a.mu.Unlock()
		f()
		a.mu.Lock()
		again := a.state == awaitAgain
		if again {
			a.state = awaitLooking
		} else {
			a.state = awaitIdle
		}
		a.mu.Unlock()
		if !again {
			return
		}
	}
}

// awaitWork hands a connection to serve to a goroutine that has served one
// and waits for another: starting a goroutine for every message, and
// growing its stack, would cost a busy server more than the message. A
// send succeeds only while a goroutine waits. Waiting goroutines are few:
// a goroutine that finds maxIdleWorkers waiting already ends instead, so
// they hold no more memory than a handful of connections' goroutines.
var (
	awaitWork   = make(chan *Conn)
	idleWorkers atomic.Int32
)

// maxIdleWorkers is how many goroutines may wait for a connection to serve.
var maxIdleWorkers = int32(max(4, 2*runtime.GOMAXPROCS(0)))

// dispatch has c served by a waiting goroutine, or by a new one.
func (c *Conn) dispatch() {
	select {
	case awaitWork <- c:
	default:
		go awaitWorker(c)
	}
}

func awaitWorker(c *Conn) {
	for {
		c.serveAwait(c.await.Load())
		if idleWorkers.Add(1) > maxIdleWorkers {
			idleWorkers.Add(-1)
			return
		}
		c = <-awaitWork
		idleWorkers.Add(-1)
	}
}

// messageAhead reports whether a read would find a data message, or the end
// of the connection, without waiting, after handling whatever complete
// control frames come first. It reports false when nothing is buffered
// and the socket has nothing to read, and true also when the next frame
// has only partly arrived: a read will wait for the rest, as it does
// mid-message. The caller holds the read lock.
func (c *Conn) messageAhead() bool {
	if c.rd.err != nil || c.rd.inMessage || c.rd.held || c.in.raw == nil {
		return true
	}
	ctx := context.Background()
	if c.pongOwed {
		c.sendPong(ctx, c.owedPong)
	}
	for {
		if c.in.buffered() == 0 {
			c.in.release()
			switch err := c.in.readNow(); err {
			case nil:
			case errWouldBlock:
				// Nothing to read; but a passed read deadline ends the
				// wait, and the read f makes reports it.
				dl := c.readDeadline.user.Load()
				return dl != 0 && monoNow() >= dl
			default:
				_ = c.readError(ctx, err)
				return true
			}
		}
		b := c.in.peek()
		if len(b) < 2 || !Opcode(b[0]&0x0f).IsControl() {
			return true
		}
		n := headerLen(b[0], b[1]) + int(b[1]&0x7f)
		if len(b) < n {
			return true
		}
		h, err := c.readHeader(ctx)
		if err != nil {
			return true
		}
		if err := c.handleControl(ctx, h); err != nil {
			return true
		}
	}
}

// watch has the poller watch the socket for the application's next message
// and reports whether it does; if not, the caller calls the application at
// once. The caller holds the read lock.
func (c *Conn) watch(a *awaitState) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	select {
	case <-c.closed:
		// Teardown began before a was made, and did not stop it.
		return false
	default:
	}
	// The phase changes first, under mu: the poller may report the
	// socket before watch returns, and must then find it watched.
	a.state = awaitWatched
	if !a.poll.watch(c) {
		a.state = awaitLooking
		return false
	}
	if dl := c.readDeadline.user.Load(); dl != 0 {
		d := time.Duration(dl - monoNow())
		if a.timer == nil {
			a.timer = time.AfterFunc(d, func() { c.wake(a) })
		} else {
			a.timer.Reset(d)
		}
	}
	return true
}

// wake is called when the watched socket is readable, when the read
// deadline passes, and when the connection closes: the first of them, if
// the application awaits a message, starts a goroutine to serve it.
// Later ones find the phase changed and do nothing.
func (c *Conn) wake(a *awaitState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != awaitWatched {
		return
	}
	a.state = awaitLooking
	if a.timer != nil {
		a.timer.Stop()
	}
	c.dispatch()
}

// stop is part of teardown, before the socket closes: nothing is watched
// from now on. (Teardown then calls wake, so that an application awaiting a
// message finds the connection closed.)
func (a *awaitState) stop() {
	a.mu.Lock()
	a.closed = true
	a.poll.forget()
	a.mu.Unlock()
}
