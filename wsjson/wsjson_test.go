package wsjson_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
	"github.com/duplex-go/websocket/internal/leakcheck"
	"github.com/duplex-go/websocket/wsjson"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// pair returns a client connection and the server connection it is
// connected to over loopback, both closed when the test ends, and a context
// for the test.
func pair(t *testing.T) (client, server *websocket.Conn, ctx context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	accepted := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}))
	defer srv.Close()
	client, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() {
		client.CloseNow()
		server.CloseNow()
	})
	return client, server, ctx
}

type point struct {
	X, Y  int
	Label string `json:"label,omitempty"`
}

// Values travel as one text message each, encoded as json.Marshal would
// encode them.
func TestWriteRead(t *testing.T) {
	client, server, ctx := pair(t)
	values := []point{{1, 2, "a"}, {}, {X: -5, Label: strings.Repeat("<&>", 30000)}}
	for _, want := range values {
		if err := wsjson.Write(ctx, client, want); err != nil {
			t.Fatal(err)
		}
		typ, msg, err := server.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantMsg, _ := json.Marshal(want)
		if typ != websocket.MessageText || string(msg) != string(wantMsg) {
			t.Fatalf("got a %v message %.60q; want text %.60q", typ, msg, wantMsg)
		}
		if err := server.Write(ctx, typ, msg); err != nil {
			t.Fatal(err)
		}
		var got point
		if err := wsjson.Read(ctx, client, &got); err != nil || got != want {
			t.Fatalf("Read = %+.60v, %v; want %+.60v", got, err, want)
		}
	}
}

// A binary message and a text message that is not JSON are errors that say
// so, and the connection goes on.
func TestReadBadMessages(t *testing.T) {
	client, server, ctx := pair(t)
	send := func(typ websocket.MessageType, msg string) {
		t.Helper()
		if err := server.Write(ctx, typ, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	var p point
	send(websocket.MessageBinary, `{"X": 1}`)
	if err := wsjson.Read(ctx, client, &p); err == nil || !strings.Contains(err.Error(), "binary message") {
		t.Fatalf("binary message: %v; want an error saying it is binary", err)
	}
	send(websocket.MessageText, `{"X": 1`)
	var syntax *json.SyntaxError
	if err := wsjson.Read(ctx, client, &p); !errors.As(err, &syntax) || !strings.HasPrefix(err.Error(), "wsjson: ") {
		t.Fatalf("invalid JSON: %v; want a wrapped *json.SyntaxError", err)
	}
	send(websocket.MessageText, `{"X": "one"}`)
	var typeErr *json.UnmarshalTypeError
	if err := wsjson.Read(ctx, client, &p); !errors.As(err, &typeErr) {
		t.Fatalf("wrong JSON type: %v; want a wrapped *json.UnmarshalTypeError", err)
	}
	send(websocket.MessageText, `{"X": 3, "Y": 4}`)
	p = point{}
	if err := wsjson.Read(ctx, client, &p); err != nil || p != (point{X: 3, Y: 4}) {
		t.Fatalf("after the bad messages: %+v, %v", p, err)
	}
}

// The read limit applies: a larger message fails the connection with 1009.
func TestReadLimit(t *testing.T) {
	client, server, ctx := pair(t)
	client.SetReadLimit(100)
	go server.Read(ctx) // to see the client's Close frame
	if err := server.Write(ctx, websocket.MessageText, []byte(`"`+strings.Repeat("x", 200)+`"`)); err != nil {
		t.Fatal(err)
	}
	var s string
	if err := wsjson.Read(ctx, client, &s); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("Read = %v; want close status 1009", err)
	}
}

// A value that cannot be encoded is an error and sends nothing.
func TestWriteUnsupported(t *testing.T) {
	client, server, ctx := pair(t)
	var unsupported *json.UnsupportedTypeError
	if err := wsjson.Write(ctx, client, map[string]any{"c": make(chan int)}); !errors.As(err, &unsupported) {
		t.Fatalf("Write = %v; want a wrapped *json.UnsupportedTypeError", err)
	}
	if err := wsjson.Write(ctx, client, 42); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := server.Read(ctx); err != nil || string(msg) != "42" {
		t.Fatalf("the peer read %q, %v; want only 42", msg, err)
	}
}

func Example() {
	type greeting struct {
		Text  string `json:"text"`
		Count int    `json:"count"`
	}
	// The server answers each greeting with its count incremented.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			var g greeting
			if err := wsjson.Read(r.Context(), c, &g); err != nil {
				return
			}
			g.Count++
			if err := wsjson.Write(r.Context(), c, g); err != nil {
				return
			}
		}
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	g := greeting{Text: "hello"}
	for range 3 {
		if err := wsjson.Write(ctx, c, g); err != nil {
			fmt.Println(err)
			return
		}
		if err := wsjson.Read(ctx, c, &g); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Printf("%+v\n", g)
	c.Close(websocket.StatusNormalClosure, "")
	// Output: {Text:hello Count:3}
}
