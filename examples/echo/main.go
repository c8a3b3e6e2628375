// Command echo is a WebSocket echo server: every message it receives is
// sent back with its type. It is the server that interoperability and
// conformance suites (Autobahn's fuzzingclient among them) are pointed at.
//
//	go run ./examples/echo -addr 127.0.0.1:9001
//
// It accepts messages up to 32 MiB (Autobahn sends 16 MiB ones; larger
// messages are refused with status 1009), negotiates permessage-deflate
// when the client offers it, and otherwise keeps the library's defaults,
// the same-origin check included.
//
// With -tls it serves HTTPS, with HTTP/2, on a self-signed certificate it
// makes at start and prints. Run it with GODEBUG=http2xconnect=1 and it
// also serves WebSockets over HTTP/2 (RFC 8441), which is what browsers
// then use for wss:// URLs:
//
//	GODEBUG=http2xconnect=1 go run ./examples/echo -tls
//
// With -serve it answers requests with websocket.Serve, the library's
// lighter HTTP/1.1 front door, instead of net/http (HTTP/2 is then off).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/duplex-go/websocket"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "address to listen on")
	useTLS := flag.Bool("tls", false, "serve wss:// and HTTP/2 on a self-signed certificate made at start")
	light := flag.Bool("serve", false, "answer requests with websocket.Serve instead of net/http (HTTP/1.1 only)")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if !*useTLS {
		fmt.Printf("echo server listening on ws://%s/\n", ln.Addr())
		log.Fatal(serve(ln, nil, *light))
	}
	cert, err := selfSigned()
	if err != nil {
		log.Fatal(err)
	}
	spki := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	fmt.Printf("echo server listening on wss://%s/ (%s)\n", ln.Addr(), protocols(*light))
	fmt.Printf("its certificate, made for this run:\n%s", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Leaf.Raw}))
	fmt.Printf("Chromium trusts it with --ignore-certificate-errors-spki-list=%s\n", base64.StdEncoding.EncodeToString(spki[:]))
	log.Fatal(serve(ln, &cert, *light))
}

// protocols says what the server speaks over TLS.
func protocols(light bool) string {
	switch {
	case light:
		return "HTTP/1.1 only, through websocket.Serve"
	case strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1"):
		return "HTTP/1.1 and HTTP/2, WebSockets over HTTP/2 on"
	}
	return "HTTP/1.1 and HTTP/2; run with GODEBUG=http2xconnect=1 for WebSockets over HTTP/2"
}

// serve runs the echo server on ln until it fails, over TLS with HTTP/2 if
// cert is not nil. With light, websocket.Serve answers the requests, over
// HTTP/1.1 only.
func serve(ln net.Listener, cert *tls.Certificate, light bool) error {
	if light {
		if cert != nil {
			ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert},
				NextProtos: []string{"http/1.1"}})
		}
		// Serve bounds the handshake itself: 64 KiB, 10 seconds.
		return websocket.Serve(ln, http.HandlerFunc(echo))
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(echo),
		// Bound how long a client may take to send its handshake; the
		// WebSocket connection itself has no such limit once upgraded.
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	if cert == nil {
		return srv.Serve(ln)
	}
	// With no NextProtos, ServeTLS offers h2 and http/1.1.
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	return srv.ServeTLS(ln, "", "")
}

// selfSigned makes a certificate for 127.0.0.1, ::1 and localhost, valid
// for a day.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "duplex echo example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// echo upgrades the request and echoes messages until the connection ends.
// Over HTTP/2 the WebSocket lives on the request's stream, so the handler
// stays in its loop until the connection ends, as it does here anyway.
func echo(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Compression: &websocket.CompressionOptions{},
	})
	if err != nil {
		log.Printf("%s: %v", r.RemoteAddr, err)
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(32 << 20)
	ctx := context.Background()
	for {
		// Whole messages, not streamed: a client that writes a large
		// message before it reads would otherwise fill both TCP buffers
		// and wait forever for us to read on.
		typ, msg, err := c.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) {
				log.Printf("%s: %v", c.RemoteAddr(), err)
			}
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}
