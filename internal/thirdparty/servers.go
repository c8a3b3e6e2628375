// Package thirdparty compares duplex with other Go WebSocket libraries: one
// echo server per library, each in its own process, driven by one load
// generator that speaks the protocol over raw TCP and favours none of them.
// See README.md for how to run it and what each row of the table measures.
package thirdparty

import (
	"bufio"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/coder/websocket"
	duplex "github.com/duplex-go/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gobwas/ws/wsutil"
	gorilla "github.com/gorilla/websocket"
	"github.com/lxzan/gws"
)

// readLimit is the largest message every server accepts.
const readLimit = 2 << 20

// libraries lists the servers in the order the table shows them; gorilla
// comes first as the baseline the others are divided by.
var libraries = []string{"gorilla", "duplex", "coder", "gobwas", "gws"}

// servers starts an echo server for each library. duplex-handler,
// duplex-await and duplex-serve are not in the default table:
// duplex-handler is duplex with the read loop inside the handler, using the
// request's context, to show what keeping the handler running costs;
// duplex-await serves each connection with Conn.AwaitMessage, holding no
// goroutine while it idles; duplex-serve is duplex behind websocket.Serve
// instead of net/http.
var servers = map[string]func(serverOptions) (*server, error){
	"duplex":         func(o serverOptions) (*server, error) { return startDuplex(o, duplexGoroutine) },
	"duplex-handler": func(o serverOptions) (*server, error) { return startDuplex(o, duplexInHandler) },
	"duplex-await":   func(o serverOptions) (*server, error) { return startDuplex(o, duplexAwait) },
	"duplex-serve":   func(o serverOptions) (*server, error) { return startDuplex(o, duplexServe) },
	"gorilla":        startGorilla,
	"coder":          startCoder,
	"gobwas":         startGobwas,
	"gws":            startGws,
}

// serverOptions is what the echo servers have in common.
type serverOptions struct {
	// deflate enables permessage-deflate without context takeover.
	deflate bool
	// report is called with every error that ends a connection other than
	// the peer's Close frame with status 1000.
	report func(error)
}

// server is a running echo server.
type server struct {
	addr string
	stop func() // closes the listener; the child exits after it
}

// echoBuffers holds the buffers the servers read a message into before
// writing it back, so that an idle connection keeps none.
var echoBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, 4<<10)
	return &b
}}

// readMessage reads r to its end into *bp, growing it as needed.
func readMessage(bp *[]byte, r io.Reader) error {
	b := (*bp)[:0]
	defer func() { *bp = b }()
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// serveHTTP serves h with a default net/http server on a loopback port.
//
// The servers keep no record of the connections they have accepted: stop
// closes the listener, and the child's exit closes the rest. A record
// would have to be kept exactly, as net/http never reports a hijacked
// connection closed; one that grew with every connection would keep them
// all alive and charge each library's server a garbage collector scanning
// them, the more the more it allocates.
func serveHTTP(h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: h,
		// Panics in handlers and accept errors show up in the child's
		// stderr, which the parent prints when a measurement fails.
		ErrorLog: log.New(os.Stderr, "http: ", 0),
	}
	go srv.Serve(ln)
	return &server{addr: ln.Addr().String(), stop: func() { srv.Close() }}, nil
}

// serveDuplex serves h with duplex.Serve on a loopback port.
func serveDuplex(h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go duplex.Serve(ln, h)
	return &server{addr: ln.Addr().String(), stop: func() { ln.Close() }}, nil
}

// How the duplex server serves a connection.
const (
	duplexGoroutine = iota // a goroutine of its own, the handler returns
	duplexInHandler        // the handler's goroutine, with the request's context
	duplexAwait            // Conn.AwaitMessage, the handler returns
	duplexServe            // as duplexGoroutine, behind duplex.Serve
)

// startDuplex accepts and, by default, returns from the handler at once,
// reading in a goroutine of the connection's own with context.Background():
// net/http then lets go of the request, the response and its
// per-connection buffers, which is what duplex recommends for many
// long-lived connections. Each message is read through Conn.Reader into a
// pooled buffer and written back with Conn.Write, the allocation-free path.
// duplexInHandler runs the loop inside the handler with the request's
// context instead, as in the package example; duplexAwait serves each
// message from a function AwaitMessage calls; duplexServe answers the
// requests with duplex.Serve instead of net/http.
func startDuplex(o serverOptions, mode int) (*server, error) {
	opts := &duplex.AcceptOptions{}
	if o.deflate {
		opts.Compression = &duplex.CompressionOptions{}
	}
	front := serveHTTP
	if mode == duplexServe {
		front = serveDuplex
	}
	return front(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := duplex.Accept(w, r, opts)
		if err != nil {
			o.report(err)
			return
		}
		c.SetReadLimit(readLimit)
		switch mode {
		case duplexInHandler:
			duplexEcho(r.Context(), c, o)
		case duplexAwait:
			duplexAwaitEcho(c, o)
		default:
			go duplexEcho(context.Background(), c, o)
		}
	}))
}

func duplexEcho(ctx context.Context, c *duplex.Conn, o serverOptions) {
	defer c.CloseNow()
	for duplexEchoOne(ctx, c, o) {
	}
}

// duplexEchoOne echoes one message and reports whether the connection
// goes on.
func duplexEchoOne(ctx context.Context, c *duplex.Conn, o serverOptions) bool {
	typ, rd, err := c.Reader(ctx)
	if err != nil {
		if duplex.CloseStatus(err) != duplex.StatusNormalClosure {
			o.report(err)
		}
		return false
	}
	bp := echoBuffers.Get().(*[]byte)
	err = readMessage(bp, rd)
	if err == nil {
		err = c.Write(ctx, typ, *bp)
	}
	echoBuffers.Put(bp)
	if err != nil {
		o.report(err)
		return false
	}
	return true
}

func duplexAwaitEcho(c *duplex.Conn, o serverOptions) {
	ctx := context.Background()
	var serve func()
	serve = func() {
		if !duplexEchoOne(ctx, c, o) {
			c.CloseNow()
			return
		}
		c.AwaitMessage(serve)
	}
	c.AwaitMessage(serve)
}

// startGorilla reads with NextReader into a pooled buffer and writes with
// WriteMessage, with the Upgrader's default buffers (it reuses net/http's).
func startGorilla(o serverOptions) (*server, error) {
	up := &gorilla.Upgrader{EnableCompression: o.deflate}
	return serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			o.report(err)
			return
		}
		defer c.Close()
		c.SetReadLimit(readLimit)
		for {
			typ, rd, err := c.NextReader()
			if err != nil {
				if !gorilla.IsCloseError(err, gorilla.CloseNormalClosure) {
					o.report(err)
				}
				return
			}
			bp := echoBuffers.Get().(*[]byte)
			err = readMessage(bp, rd)
			if err == nil {
				err = c.WriteMessage(typ, *bp)
			}
			echoBuffers.Put(bp)
			if err != nil {
				o.report(err)
				return
			}
		}
	}))
}

// startCoder reads with Conn.Reader into a pooled buffer and writes with
// Conn.Write.
func startCoder(o serverOptions) (*server, error) {
	opts := &websocket.AcceptOptions{}
	if o.deflate {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	return serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, opts)
		if err != nil {
			o.report(err)
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(readLimit)
		ctx := r.Context()
		for {
			typ, rd, err := c.Reader(ctx)
			if err != nil {
				if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
					o.report(err)
				}
				return
			}
			bp := echoBuffers.Get().(*[]byte)
			err = readMessage(bp, rd)
			if err == nil {
				err = c.Write(ctx, typ, *bp)
			}
			echoBuffers.Put(bp)
			if err != nil {
				o.report(err)
				return
			}
		}
	}))
}

// startGobwas uses gobwas's own fast path: a plain listener and its
// zero-copy ws.Upgrader instead of net/http, then wsutil's Reader and
// Writer as its README and Autobahn server do. The reader's source is a
// 4 KiB bufio.Reader (gorilla's and gws's default read buffer): wsutil
// reads a header in two small reads, which would be two system calls on a
// bare socket. Compression follows the wsflate example, with
// compress/flate at BestSpeed like the other libraries.
func startGobwas(o serverOptions) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go func() {
				defer nc.Close()
				if err := gobwasEcho(nc, o.deflate); err != nil {
					o.report(err)
				}
			}()
		}
	}()
	return &server{
		addr: ln.Addr().String(),
		stop: func() { ln.Close() },
	}, nil
}

// gobwasEcho upgrades nc and echoes messages until the peer closes.
func gobwasEcho(nc net.Conn, deflate bool) error {
	var ext wsflate.Extension
	var u ws.Upgrader
	if deflate {
		ext.Parameters = wsflate.Parameters{
			ServerNoContextTakeover: true,
			ClientNoContextTakeover: true,
		}
		u.Negotiate = ext.Negotiate
	}
	if _, err := u.Upgrade(nc); err != nil {
		return err
	}
	state := ws.StateServerSide
	_, compressed := ext.Accepted()
	if compressed {
		state |= ws.StateExtended
	}
	control := wsutil.ControlFrameHandler(nc, state)
	var msg wsflate.MessageState
	rd := &wsutil.Reader{
		Source:         bufio.NewReaderSize(nc, 4<<10),
		State:          state,
		OnIntermediate: control,
		MaxMessageSize: readLimit,
	}
	wr := wsutil.NewWriter(nc, state, 0)
	if compressed {
		rd.Extensions = []wsutil.RecvExtension{&msg}
		wr.SetExtensions(&msg)
	}
	var fr *wsflate.Reader
	var fw *wsflate.Writer
	for {
		h, err := rd.NextFrame()
		if err != nil {
			return err
		}
		if h.OpCode.IsControl() {
			if err := control(h, rd); err != nil {
				var ce wsutil.ClosedError
				if errors.As(err, &ce) && ce.Code == ws.StatusNormalClosure {
					return nil
				}
				return err
			}
			continue
		}
		var src io.Reader = rd
		if msg.IsCompressed() {
			if fr == nil {
				fr = wsflate.NewReader(nil, func(r io.Reader) wsflate.Decompressor {
					return flate.NewReader(r)
				})
			}
			fr.Reset(rd)
			src = fr
		}
		bp := echoBuffers.Get().(*[]byte)
		err = readMessage(bp, io.LimitReader(src, readLimit+1))
		if err == nil && len(*bp) > readLimit {
			err = fmt.Errorf("message larger than %d bytes", readLimit)
		}
		if err == nil {
			wr.ResetOp(h.OpCode)
			if msg.IsCompressed() {
				if fw == nil {
					fw = wsflate.NewWriter(nil, func(w io.Writer) wsflate.Compressor {
						f, _ := flate.NewWriter(w, flate.BestSpeed)
						return f
					})
				}
				fw.Reset(wr)
				if _, err = fw.Write(*bp); err == nil {
					err = fw.Close()
				}
			} else {
				_, err = wr.Write(*bp)
			}
		}
		if err == nil {
			err = wr.Flush()
		}
		echoBuffers.Put(bp)
		if err != nil {
			return err
		}
	}
}

// startGws uses gws's event API as its examples/echo server does: an
// Upgrader under net/http, ReadLoop in a goroutine of its own, and
// OnMessage writing the message back. ParallelEnabled stays off (its
// default, and what examples/echo uses), so a connection's messages are
// handled in order on its read goroutine.
func startGws(o serverOptions) (*server, error) {
	opts := &gws.ServerOption{ReadMaxPayloadSize: readLimit}
	if o.deflate {
		opts.PermessageDeflate = gws.PermessageDeflate{Enabled: true}
	}
	up := gws.NewUpgrader(&gwsEcho{report: o.report}, opts)
	return serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		socket, err := up.Upgrade(w, r)
		if err != nil {
			o.report(err)
			return
		}
		go socket.ReadLoop()
	}))
}

type gwsEcho struct {
	gws.BuiltinEventHandler
	report func(error)
}

func (e *gwsEcho) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	_ = socket.WriteMessage(message.Opcode, message.Bytes())
}

func (e *gwsEcho) OnClose(socket *gws.Conn, err error) {
	var ce *gws.CloseError
	if errors.As(err, &ce) && ce.Code == 1000 {
		return
	}
	e.report(err)
}
