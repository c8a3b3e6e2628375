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
