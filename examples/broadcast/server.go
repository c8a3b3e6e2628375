package main

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/duplex-go/websocket"
)

const (
	// defaultQueueSize is how many ticks may wait for a client's writer
	// before the client counts as too slow and is dropped.
	defaultQueueSize = 32
	// writeTimeout bounds one write to a client.
	writeTimeout = 5 * time.Second
	// Every keepAliveInterval a client is pinged, and it is dropped if no
	// pong comes within keepAliveTimeout.
	keepAliveInterval = 30 * time.Second
	keepAliveTimeout  = 10 * time.Second
)

// tick is what the server sends, as JSON, every interval.
type tick struct {
	Seq     uint64  `json:"seq"`     // 1, 2, 3 …: a gap means ticks were lost
	Time    int64   `json:"t"`       // when the server sent it, in Unix microseconds
	Clients int     `json:"clients"` // how many clients it went to
	Quotes  []quote `json:"quotes"`
}

type quote struct {
	Symbol string  `json:"s"`
	Price  float64 `json:"p"`
	Change float64 `json:"c"` // since the previous tick
}

// server ticks and serves the ticks' WebSocket endpoint.
type server struct {
	interval  time.Duration
	queueSize int
	quotes    []quote // owned by run

	// conns holds every connection, so that shutting the server down can
	// say goodbye to each (see serve).
	conns websocket.Group

	mu      sync.Mutex
	clients map[*client]struct{}
}

// client is one connection receiving ticks.
type client struct {
	queue chan *websocket.PreparedMessage

	// kicked is closed when the server drops the client, with code and
	// reason set before.
	kicked chan struct{}
	code   websocket.StatusCode
	reason string
}

// newServer returns a server that ticks every interval and lets queueSize
// ticks wait for a client before dropping it.
func newServer(interval time.Duration, queueSize int) *server {
	s := &server{interval: interval, queueSize: max(queueSize, 1), clients: make(map[*client]struct{})}
	for _, sym := range []struct {
		s string
		p float64
	}{{"ACME", 112.50}, {"GLOBX", 48.20}, {"INITECH", 7.35}, {"UMBRL", 301.00}, {"WAYNE", 175.80}, {"STARK", 922.10}} {
		s.quotes = append(s.quotes, quote{Symbol: sym.s, Price: sym.p})
	}
	return s
}

// run ticks until ctx is done.
func (s *server) run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seq++
		s.move()
		s.broadcast(seq)
	}
}

// move takes every price a random step.
func (s *server) move() {
	for i := range s.quotes {
		q := &s.quotes[i]
		next := math.Round(q.Price*(1+rand.NormFloat64()*0.002)*100) / 100
		q.Change = math.Round((next-q.Price)*100) / 100
		q.Price = max(next, 0.01)
	}
}

// broadcast sends tick seq to every client: it is encoded and framed once,
// and queued for each client without waiting; a client whose queue is full
// is dropped.
func (s *server) broadcast(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.clients) == 0 {
		return
	}
	data, err := json.Marshal(tick{Seq: seq, Time: time.Now().UnixMicro(), Clients: len(s.clients), Quotes: s.quotes})
	if err != nil {
		panic(err) // a tick is numbers and strings
	}
	pm := websocket.NewPreparedMessage(websocket.MessageText, data)
	for cl := range s.clients {
		select {
		case cl.queue <- pm:
		default:
			s.dropLocked(cl, websocket.StatusPolicyViolation, "too slow to keep up")
		}
	}
}

// dropLocked removes cl and has its goroutine close the connection with
// code and reason.
func (s *server) dropLocked(cl *client, code websocket.StatusCode, reason string) {
	delete(s.clients, cl)
	cl.code, cl.reason = code, reason
	close(cl.kicked)
}

// ServeHTTP upgrades a request and writes ticks to it until it ends.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered with an HTTP error.
	}
	defer c.CloseNow()
	// From here on, a server shutting down closes the connection with
	// 1001, or at once if it is already shutting down.
	s.conns.Add(c)
	c.SetKeepAlive(keepAliveInterval, keepAliveTimeout)
	// The client has nothing to say: a goroutine reads for us, answering
	// pings and the Close frame. Its context is done when the connection
	// ends.
	ctx := c.CloseRead(context.Background())

	cl := &client{queue: make(chan *websocket.PreparedMessage, s.queueSize), kicked: make(chan struct{})}
	s.add(cl)
	defer s.remove(cl)
	for {
		// Being dropped wins over writing what is queued.
		select {
		case <-cl.kicked:
			// Close sends the Close frame after the write in progress,
			// if any, and waits for the client's answer.
			c.Close(cl.code, cl.reason)
			return
		default:
		}
		select {
		case <-ctx.Done():
			return
		case <-cl.kicked:
		case pm := <-cl.queue:
			wctx, cancel := context.WithTimeout(ctx, writeTimeout)
			err := c.WritePrepared(wctx, pm)
			cancel()
			if errors.Is(err, net.ErrClosed) {
				// The connection is closing: the server, shutting
				// down, sent a Close frame. Let the closing
				// handshake finish before the deferred CloseNow.
				<-ctx.Done()
			}
			if err != nil {
				return
			}
		}
	}
}

// add registers cl for ticks.
func (s *server) add(cl *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[cl] = struct{}{}
}

func (s *server) remove(cl *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clients, cl)
}
