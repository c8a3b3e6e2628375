package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/duplex-go/websocket"
)

// loadResult is what the clients of a load run received while measuring.
type loadResult struct {
	clients   int
	duration  time.Duration
	messages  int             // ticks received, by all clients together
	missed    uint64          // ticks skipped in a client's sequence
	dropped   int             // clients whose connection ended early
	latencies []time.Duration // from a tick's timestamp to its arrival, sorted
}

// rate returns the messages received per second.
func (r *loadResult) rate() float64 { return float64(r.messages) / r.duration.Seconds() }

// percentile returns the latency that fraction p of the ticks beat.
func (r *loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies))*p+0.999999) - 1
	return r.latencies[min(max(i, 0), len(r.latencies)-1)]
}

func (r *loadResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d clients, %v: %d messages, %.1f messages/s\n", r.clients, r.duration, r.messages, r.rate())
	fmt.Fprintf(&b, "fan-out latency: p50 %v  p90 %v  p99 %v  max %v\n",
		r.percentile(0.50), r.percentile(0.90), r.percentile(0.99), r.percentile(1))
	fmt.Fprintf(&b, "ticks missed: %d, clients dropped: %d\n", r.missed, r.dropped)
	return b.String()
}

// runLoad connects n clients to url, measures what they receive for d, and
// closes them.
func runLoad(ctx context.Context, url string, n int, d time.Duration) (*loadResult, error) {
	conns := make([]*websocket.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
	}()
	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	sem := make(chan struct{}, 64) // handshakes in flight
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conns[i], _, errs[i] = websocket.Dial(dialCtx, url, nil)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("connecting %d clients: %w", n, err)
	}

	start := time.Now()
	end := start.Add(d)
	readCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	type result struct {
		messages  int
		missed    uint64
		dropped   bool
		latencies []time.Duration
	}
	results := make([]result, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			var last uint64
			for {
				_, data, err := c.Read(readCtx)
				now := time.Now()
				if err != nil {
					// The read deadline ends the run; an error that
					// says the connection closed means a drop.
					r.dropped = websocket.CloseStatus(err) != -1
					return
				}
				var tk tick
				if err := json.Unmarshal(data, &tk); err != nil {
					r.dropped = true
					return
				}
				if last != 0 && tk.Seq > last+1 {
					r.missed += tk.Seq - last - 1
				}
				last = tk.Seq
				r.messages++
				r.latencies = append(r.latencies, now.Sub(time.UnixMicro(tk.Time)))
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	res := &loadResult{clients: n, duration: d}
	for _, r := range results {
		res.messages += r.messages
		res.missed += r.missed
		res.latencies = append(res.latencies, r.latencies...)
		if r.dropped {
			res.dropped++
		}
	}
	slices.Sort(res.latencies)

	// Say goodbye, all at once. Ticks keep coming meanwhile; Close reads
	// and discards them until the server's answer.
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Close(websocket.StatusNormalClosure, "")
		}()
	}
	wg.Wait()
	return res, nil
}
