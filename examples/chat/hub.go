package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/duplex-go/websocket"
)

const (
	// defaultQueueSize is how many messages may wait for a member's writer
	// before the member counts as too slow and is disconnected.
	defaultQueueSize = 64
	// readLimit bounds a message from a member, JSON included.
	readLimit = 4 << 10
	// maxNameLen and maxTextLen bound names and messages, in characters.
	maxNameLen = 24
	maxTextLen = 1000
	// writeTimeout bounds one write to a member.
	writeTimeout = 10 * time.Second
	// Every keepAliveInterval a member is pinged, and it is disconnected
	// if no pong comes within keepAliveTimeout.
	keepAliveInterval = 30 * time.Second
	keepAliveTimeout  = 10 * time.Second

	// statusBadName closes a connection whose name is not acceptable. It
	// is in the range for applications (4000–4999), so that the page can
	// tell it from other closures and ask for another name instead of
	// reconnecting.
	statusBadName websocket.StatusCode = 4000
)

// event is what the room sends to its members, as JSON.
type event struct {
	// Type is "welcome" (the first message on a connection: Name is you,
	// Members who else is here), "join", "leave" (with an optional Reason)
	// or "message" (Name said Text).
	Type    string   `json:"type"`
	Seq     uint64   `json:"seq"`            // the room's event number; every member sees the same order
	Time    int64    `json:"time,omitempty"` // Unix milliseconds
	Name    string   `json:"name"`
	Text    string   `json:"text,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Members []string `json:"members,omitempty"`
}

// post is what a member sends to the room, as JSON.
type post struct {
	Text string `json:"text"`
}

// hub is a chat room. It serves the room's WebSocket endpoint.
type hub struct {
	queueSize int

	// conns holds every connection, so that shutting the server down can
	// say goodbye to each (see main).
	conns websocket.Group

	mu      sync.Mutex
	members map[*member]struct{}
	seq     uint64 // of the last event
}

// member is one connection in the room.
type member struct {
	name    string
	welcome []byte                          // the first message, sent before the queue
	queue   chan *websocket.PreparedMessage // events waiting for the writer

	// kicked is closed when the room disconnects the member, with code and
	// reason set before.
	kicked chan struct{}
	code   websocket.StatusCode
	reason string
}

// newHub returns an empty room in which each member may have queueSize
// messages waiting to be written before it is disconnected as too slow.
func newHub(queueSize int) *hub {
	return &hub{queueSize: max(queueSize, 1), members: make(map[*member]struct{})}
}

// ServeHTTP upgrades a request for /ws?name=... and serves the member until
// it leaves.
func (h *hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The page is served from this origin, so the default same-origin
	// check is all the page needs.
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered with an HTTP error.
	}
	defer c.CloseNow()
	// From here on, a server shutting down closes the connection with
	// 1001, or at once if it is already shutting down.
	h.conns.Add(c)
	name, ok := validName(r.URL.Query().Get("name"))
	if !ok {
		c.Close(statusBadName, fmt.Sprintf("a name is 1 to %d printable characters", maxNameLen))
		return
	}
	c.SetReadLimit(readLimit)
	c.SetKeepAlive(keepAliveInterval, keepAliveTimeout)

	m := &member{
		name:   name,
		queue:  make(chan *websocket.PreparedMessage, h.queueSize),
		kicked: make(chan struct{}),
	}
	h.join(m)

	ctx, cancel := context.WithCancel(context.Background())
	written := make(chan struct{})
	go func() {
		defer close(written)
		m.writeLoop(ctx, c)
	}()
	err = h.readLoop(c, m)
	reason := ""
	if websocket.CloseStatus(err) == websocket.StatusAbnormalClosure {
		reason = "connection lost"
	}
	h.leave(m, reason)
	cancel()
	<-written
}

// readLoop reads the member's posts into the room until the connection
// ends, and returns how it ended.
func (h *hub) readLoop(c *websocket.Conn, m *member) error {
	ctx := context.Background()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		var p post
		if typ != websocket.MessageText || json.Unmarshal(data, &p) != nil {
			return c.Close(websocket.StatusUnsupportedData, `messages are JSON text: {"text": "..."}`)
		}
		text := strings.TrimSpace(p.Text)
		if utf8.RuneCountInString(text) > maxTextLen {
			return c.Close(websocket.StatusPolicyViolation, fmt.Sprintf("a message is at most %d characters", maxTextLen))
		}
		if text != "" {
			h.say(m, text)
		}
	}
}

// writeLoop writes the welcome and then the member's queue to the
// connection, until ctx is done or the room disconnects the member.
func (m *member) writeLoop(ctx context.Context, c *websocket.Conn) {
	if err := write(ctx, c, websocket.NewPreparedMessage(websocket.MessageText, m.welcome)); err != nil {
		writeFailed(c, err)
		return
	}
	for {
		// Being kicked wins over writing what is queued.
		select {
		case <-m.kicked:
			// Close sends the Close frame after the write in
			// progress, if any; the reader sees the answer.
			c.Close(m.code, m.reason)
			return
		default:
		}
		select {
		case <-ctx.Done():
			return
		case <-m.kicked:
		case pm := <-m.queue:
			if err := write(ctx, c, pm); err != nil {
				writeFailed(c, err)
				return
			}
		}
	}
}

// writeFailed ends a connection that a write failed on; the reader then
// fails and the member leaves. A connection already closing (the server
// shutting down sent a Close frame) is left to finish its closing handshake.
func writeFailed(c *websocket.Conn, err error) {
	if !errors.Is(err, net.ErrClosed) {
		c.CloseNow()
	}
}

// write writes one message within writeTimeout.
func write(ctx context.Context, c *websocket.Conn, pm *websocket.PreparedMessage) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return c.WritePrepared(ctx, pm)
}

// join adds m to the room: it prepares m's welcome and tells everyone,
// m included, that m joined.
func (h *hub) join(m *member) {
	h.mu.Lock()
	defer h.mu.Unlock()
	welcome := event{Type: "welcome", Seq: h.seq, Name: m.name, Members: []string{}}
	for other := range h.members {
		welcome.Members = append(welcome.Members, other.name)
	}
	m.welcome = encode(welcome)
	h.members[m] = struct{}{}
	h.broadcastLocked(event{Type: "join", Name: m.name})
}

// leave removes m from the room, if it is still there, and tells everyone.
func (h *hub) leave(m *member, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.members[m]; ok {
		delete(h.members, m)
		h.broadcastLocked(event{Type: "leave", Name: m.name, Reason: reason})
	}
}

// say sends m's message to everyone.
func (h *hub) say(m *member, text string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.members[m]; ok {
		h.broadcastLocked(event{Type: "message", Name: m.name, Text: text})
	}
}

// broadcastLocked numbers ev and queues it for every member. The lock
// makes every member's queue receive events in the same order. The event is
// encoded and framed once, however many members there are; a member whose
// queue is full is disconnected, and its leaving is broadcast in turn.
func (h *hub) broadcastLocked(ev event) {
	pending := []event{ev}
	for len(pending) > 0 {
		ev, pending = pending[0], pending[1:]
		h.seq++
		ev.Seq = h.seq
		ev.Time = time.Now().UnixMilli()
		pm := websocket.NewPreparedMessage(websocket.MessageText, encode(ev))
		for m := range h.members {
			select {
			case m.queue <- pm:
			default:
				const reason = "too slow to keep up"
				log.Printf("chat: disconnecting %q: %s", m.name, reason)
				h.kickLocked(m, websocket.StatusPolicyViolation, reason)
				pending = append(pending, event{Type: "leave", Name: m.name, Reason: reason})
			}
		}
	}
}

// kickLocked removes m from the room and has its writer close the
// connection with code and reason.
func (h *hub) kickLocked(m *member, code websocket.StatusCode, reason string) {
	delete(h.members, m)
	m.code, m.reason = code, reason
	close(m.kicked)
}

// encode returns ev as JSON.
func encode(ev event) []byte {
	data, err := json.Marshal(ev)
	if err != nil {
		panic(err) // an event is strings and numbers
	}
	return data
}

// validName returns name without surrounding spaces, and whether it is 1 to
// maxNameLen printable characters.
func validName(name string) (string, bool) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxNameLen {
		return "", false
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return "", false
		}
	}
	return name, true
}
