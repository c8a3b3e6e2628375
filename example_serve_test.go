package websocket_test

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/duplex-go/websocket"
)

// A port that serves only WebSockets can answer its requests with Serve
// instead of net/http: the same handler upgrades with Accept, at a lower
// cost per opening handshake. Requests that are not upgrades get the
// handler's HTTP response, and their connection closes after it.
func ExampleServe() {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return // Accept has answered with an HTTP error.
		}
		go func() { // the handler may return; Serve keeps nothing of it
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
		}()
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	go websocket.Serve(ln, mux)

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/echo", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		fmt.Println(err)
		return
	}
	_, reply, err := c.Read(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s\n", reply)

	resp, err := http.Get("http://" + ln.Addr().String() + "/elsewhere")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Close)
	fmt.Println(c.Close(websocket.StatusNormalClosure, "done"))
	// Output:
	// hello
	// 404 Not Found true
	// <nil>
}
