package websocket_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/duplex-go/websocket"
)

// subscriber is one connection receiving a broadcast: the publisher queues
// messages without waiting, and the subscriber's own goroutine writes them.
type subscriber struct {
	c      *websocket.Conn
	queue  chan []byte   // bounded: how far the subscriber may fall behind
	kicked chan struct{} // closed when the subscriber fell too far behind
}

// send queues msg, or reports false and drops the subscriber if its queue
// is full. It never blocks, so one slow subscriber cannot stall the others.
func (s *subscriber) send(msg []byte) bool {
	select {
	case s.queue <- msg:
		return true
	default:
		close(s.kicked)
		return false
	}
}

// writeLoop writes queued messages, each within a deadline, until the
// subscriber is dropped.
func (s *subscriber) writeLoop() {
	for {
		select {
		case <-s.kicked:
			// The Close frame goes out after the message being written.
			s.c.Close(websocket.StatusPolicyViolation, "too slow to keep up")
			return
		case msg := <-s.queue:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := s.c.Write(ctx, websocket.MessageBinary, msg)
			cancel()
			if err != nil {
				s.c.CloseNow()
				return
			}
		}
	}
}

// Writes are synchronous: a peer that does not read blocks them once the
// TCP buffers are full. A server that must not wait for its slowest client
// gives each client a bounded queue and a writer goroutine, and drops a
// client whose queue is full, here with status 1008.
func Example_slowConsumer() {
	subscribed := make(chan *subscriber)
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		s := &subscriber{c: c, queue: make(chan []byte, 16), kicked: make(chan struct{})}
		subscribed <- s
		s.writeLoop()
		close(done)
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	s := <-subscribed

	// Publish to a client that is not reading, until it is dropped.
	msg := make([]byte, 64<<10)
	for i := 0; s.send(msg); i++ {
		if i == 10000 {
			fmt.Println("the client was never dropped")
			return
		}
	}
	fmt.Println("publisher: dropped a subscriber whose queue was full")

	// The client, reading at last, finds what the buffers held and then
	// the Close frame.
	for {
		if _, _, err := c.Read(ctx); err != nil {
			fmt.Println("client:", err)
			break
		}
	}
	<-done
	// Output:
	// publisher: dropped a subscriber whose queue was full
	// client: websocket: peer closed the connection: status 1008 (policy violation): "too slow to keep up"
}
