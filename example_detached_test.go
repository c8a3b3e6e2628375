package websocket_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/duplex-go/websocket"
)

// A server holding many long-lived connections can return from the handler
// as soon as Accept succeeds and serve the connection from a goroutine of
// its own. net/http then frees the request, the response and its buffers
// (about 10 KiB per connection) instead of keeping them while the handler
// runs. The request's context ends when the handler returns, so the
// goroutine uses a context of its own. Over HTTP/2 (r.ProtoMajor == 2) the
// handler must keep running instead.
func Example_returnFromHandler() {
	serve := func(c *websocket.Conn) {
		defer c.CloseNow()
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}
	handlerReturned := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		if r.ProtoMajor == 2 {
			serve(c)
			return
		}
		go serve(c)
		handlerReturned <- struct{}{}
	}))
	defer srv.Close()

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	<-handlerReturned
	c.Write(ctx, websocket.MessageText, []byte("still here"))
	_, msg, _ := c.Read(ctx)
	fmt.Println(string(msg))
	fmt.Println(c.Close(websocket.StatusNormalClosure, "done"))
	// Output:
	// still here
	// <nil>
}

// A server with many mostly idle connections can serve each message from a
// function that AwaitMessage calls once the message has begun to arrive,
// instead of from a goroutine per connection that waits for it. Between
// messages such a connection holds no goroutine (on Linux), and costs about
// 3 KiB instead of 7 KiB or more.
func Example_awaitMessage() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ctx := context.Background() // the request's ends with the handler
		var serve func()
		serve = func() {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				c.CloseNow()
				return
			}
			if c.Write(ctx, typ, msg) == nil {
				c.AwaitMessage(serve)
			}
		}
		c.AwaitMessage(serve)
	}))
	defer srv.Close()

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	for _, word := range []string{"one", "two"} {
		c.Write(ctx, websocket.MessageText, []byte(word))
		_, msg, _ := c.Read(ctx)
		fmt.Println(string(msg))
	}
	fmt.Println(c.Close(websocket.StatusNormalClosure, "done"))
	// Output:
	// one
	// two
	// <nil>
}
