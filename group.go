package websocket

import (
	"context"
	"sync"
)

// A Group is a set of connections to close together when a server shuts
// down. [net/http.Server.Shutdown] closes listeners and idle connections
// and waits for requests in flight, but it does not track hijacked
// connections, so it neither waits for WebSocket connections nor closes
// them. Add each connection to a Group and shut the Group down after the
// server:
//
//	var conns websocket.Group
//
//	http.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
//		c, err := websocket.Accept(w, r, nil)
//		if err != nil {
//			return
//		}
//		defer c.CloseNow()
//		conns.Add(c)
//		... // read and write until the connection ends
//	})
//
//	// On the way out: stop accepting, let plain HTTP requests finish,
//	// then say goodbye to WebSocket clients, within one deadline.
//	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//	defer cancel()
//	srv.Shutdown(ctx)
//	conns.Shutdown(ctx)
//
// Shutting the Group down from [net/http.Server.RegisterOnShutdown] works
// too, in a goroutine with a context of its own, since the function is
// called without one.
//
// A connection leaves its Group when it closes, however it closes. The
// zero value is an empty Group ready to use; a Group must not be copied
// after first use. Its methods are safe for concurrent use.
type Group struct {
	mu       sync.Mutex
	conns    map[*Conn]bool // true once the group has begun to close it
	shutdown bool           // Shutdown has been called
	emptied  chan struct{}  // closed, and cleared, when conns becomes empty
}

// shutdownReason is the reason in the Close frame that [Group.Shutdown]
// sends.
const shutdownReason = "server shutting down"

// Add adds c to the group until c closes. If [Group.Shutdown] has been
// called, Add closes c at once with [StatusGoingAway], returning when the
// closing handshake is done, so that a connection accepted during shutdown
// does not outlive it.
//
// Adding a connection to a Group it is already in has no effect. A
// connection may be in more than one Group (one for the server and one per
// chat room, say); it leaves each when it closes.
func (g *Group) Add(c *Conn) {
	g.mu.Lock()
	if _, ok := g.conns[c]; ok {
		g.mu.Unlock()
		return
	}
	if g.conns == nil {
		g.conns = make(map[*Conn]bool)
	}
	shutdown := g.shutdown
	g.conns[c] = shutdown
	g.mu.Unlock()

	// Chain onto a hook that is already there rather than replace it.
	for {
		prev := c.afterClose.Load()
		hook := func() {
			if prev != nil {
				(*prev)()
			}
			g.remove(c)
		}
		if c.afterClose.CompareAndSwap(prev, &hook) {
			break
		}
	}
	// The connection may have closed before the hook was in place, in
	// which case the hook will not run.
	select {
	case <-c.closed:
		g.remove(c)
		return
	default:
	}
	if shutdown {
		_ = c.Close(StatusGoingAway, shutdownReason)
	}
}

// remove takes c out of the group.
func (g *Group) remove(c *Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.conns, c)
	if len(g.conns) == 0 && g.emptied != nil {
		close(g.emptied)
		g.emptied = nil
	}
}

// Len returns the number of connections in the group: those added and not
// yet closed.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// Shutdown closes every connection in the group: it sends each a Close
// frame with [StatusGoingAway] and the reason "server shutting down", all
// at once, and waits for the closing handshakes to finish. When ctx is done
// first, it closes the connections that are left without a handshake
// ([Conn.CloseNow]) and returns ctx's error; otherwise it returns nil.
// Either way the connections it closed have left the group when Shutdown
// returns, and the goroutines it started have ended.
//
// Connections added after Shutdown is called are closed by [Group.Add].
// Calling Shutdown again waits for those, and for any still closing.
func (g *Group) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	g.shutdown = true
	var conns []*Conn
	for c, closing := range g.conns {
		// A second Close would cut the first one's handshake short.
		if !closing {
			conns = append(conns, c)
			g.conns[c] = true
		}
	}
	g.mu.Unlock()

	// Each Close waits for its peer, so they run side by side; every one
	// ends by tearing its connection down, which removes it from the
	// group.
	var closing sync.WaitGroup
	for _, c := range conns {
		closing.Add(1)
		go func() {
			defer closing.Done()
			_ = c.Close(StatusGoingAway, shutdownReason)
		}()
	}
	defer closing.Wait()

	for {
		g.mu.Lock()
		if len(g.conns) == 0 {
			g.mu.Unlock()
			return nil
		}
		if g.emptied == nil {
			g.emptied = make(chan struct{})
		}
		emptied := g.emptied
		g.mu.Unlock()
		select {
		case <-emptied:
		case <-ctx.Done():
			g.closeNow()
			return ctx.Err()
		}
	}
}

// closeNow closes every connection left in the group without a handshake.
// Closing a connection unblocks whatever waits on it, the goroutines of
// Shutdown and Add included.
func (g *Group) closeNow() {
	g.mu.Lock()
	conns := make([]*Conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	// Not under the lock: a connection's teardown calls remove.
	for _, c := range conns {
		_ = c.CloseNow()
	}
}
