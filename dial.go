package websocket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DialOptions configures [Dial]. The zero value (or nil) dials directly or
// through the proxy the environment names, without subprotocol or
// compression, verifying TLS certificates against the system roots.
type DialOptions struct {
	// HTTPHeader holds extra headers for the handshake request, such as
	// Origin, Authorization or Cookie. The headers the handshake itself
	// needs are set by Dial and must not be given here.
	HTTPHeader http.Header

	// Subprotocols lists the subprotocols to offer, most preferred first.
	Subprotocols []string

	// Compression offers permessage-deflate (RFC 7692). Nil does not.
	Compression *CompressionOptions

	// TLSConfig configures TLS for wss:// URLs. Nil means the defaults:
	// the certificate is verified against the system roots for the URL's
	// host. Its NextProtos are replaced by "http/1.1".
	TLSConfig *tls.Config

	// Proxy returns the HTTP proxy to tunnel through with CONNECT for a
	// request, or nil for none; the request's URL has scheme http or
	// https. Nil means [http.ProxyFromEnvironment]. Credentials in the
	// proxy URL are sent as Basic authorization.
	Proxy func(*http.Request) (*url.URL, error)

	// NetDialContext dials the TCP connection (to the server or the
	// proxy). Nil means a [net.Dialer] with a 30-second keep-alive.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// maxErrorBody is how much of a refusing response's body Dial keeps.
const maxErrorBody = 64 << 10

// Dial opens a WebSocket connection to a ws:// or wss:// URL (RFC 6455 §4.1).
// ctx bounds everything up to the end of the opening handshake: name
// resolution, the TCP connection, the proxy tunnel, TLS and the handshake;
// the connection, once open, outlives it.
//
// It returns the server's handshake response too; when the server refuses
// the upgrade, the error is a *[HandshakeError] and the response's body
// (up to 64 KiB) is readable, so the caller can see why.
func Dial(ctx context.Context, rawURL string, opts *DialOptions) (*Conn, *http.Response, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("websocket: bad URL: %w", err)
	}
	httpURL := *u
	switch u.Scheme {
	case "ws":
		httpURL.Scheme = "http"
	case "wss":
		httpURL.Scheme = "https"
	default:
		return nil, nil, errBadScheme
	}
	httpURL.Fragment = ""

	key := newChallengeKey()
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &httpURL,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, len(opts.HTTPHeader)+6),
		Host:       u.Host,
	}
	for k, vs := range opts.HTTPHeader {
		if strings.EqualFold(k, "Host") {
			req.Host = vs[0]
			continue
		}
		req.Header[k] = vs
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("Sec-WebSocket-Version", "13")
	if len(opts.Subprotocols) > 0 {
		req.Header.Set("Sec-WebSocket-Protocol", strings.Join(opts.Subprotocols, ", "))
	}
	if offer := offerExtensions(opts.Compression); offer != "" {
		req.Header.Set("Sec-WebSocket-Extensions", offer)
	}

	nc, err := dialTransport(ctx, u, req, opts)
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			nc.Close()
		}
	}()
	stop := watchContext(ctx, nc)
	defer stop()

	if err := req.Write(nc); err != nil {
		return nil, nil, dialError(ctx, "sending the handshake request", err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, nil, dialError(ctx, "reading the handshake response", err)
	}
	subprotocol, ext, herr := checkResponse(resp, key, opts)
	if herr != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		herr.Response = resp
		return nil, resp, herr
	}
	var buffered []byte
	if n := br.Buffered(); n > 0 {
		buffered, _ = br.Peek(n)
	}
	if !stop() {
		return nil, nil, dialError(ctx, "handshake", ctx.Err())
	}
	_ = nc.SetDeadline(time.Time{})
	ok = true
	return newConn(nc, false, buffered, subprotocol, ext), resp, nil
}

// checkResponse applies RFC 6455 §4.1 to the server's handshake response.
func checkResponse(resp *http.Response, key string, opts *DialOptions) (string, extensions, *HandshakeError) {
	bad := func(format string, args ...any) (string, extensions, *HandshakeError) {
		return "", extensions{}, &HandshakeError{Status: resp.StatusCode, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case resp.StatusCode != http.StatusSwitchingProtocols:
		return bad("server answered %q instead of 101 Switching Protocols", resp.Status)
	case !hasToken(resp.Header, "Upgrade", "websocket"):
		return bad("response's Upgrade header is %q, not websocket", resp.Header.Get("Upgrade"))
	case !hasToken(resp.Header, "Connection", "upgrade"):
		return bad("response's Connection header is %q, not upgrade", resp.Header.Get("Connection"))
	case resp.Header.Get("Sec-WebSocket-Accept") != AcceptKey(key):
		return bad("response's Sec-WebSocket-Accept %q does not answer our key", resp.Header.Get("Sec-WebSocket-Accept"))
	}
	subprotocol := ""
	if ps := resp.Header.Values("Sec-WebSocket-Protocol"); len(ps) > 0 {
		offered := false
		for _, p := range opts.Subprotocols {
			offered = offered || (len(ps) == 1 && ps[0] == p)
		}
		if !offered {
			return bad("server chose subprotocol %q, which we did not offer", strings.Join(ps, ", "))
		}
		subprotocol = ps[0]
	}
	ext, err := acceptedExtensions(resp.Header, opts.Compression)
	if err != nil {
		return bad("%v", err)
	}
	return subprotocol, ext, nil
}

// dialTransport opens the connection a handshake request goes over: TCP,
// through an HTTP proxy if one applies, then TLS for wss.
func dialTransport(ctx context.Context, u *url.URL, req *http.Request, opts *DialOptions) (net.Conn, error) {
	dial := opts.NetDialContext
	if dial == nil {
		dial = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}
	proxyFunc := opts.Proxy
	if proxyFunc == nil {
		proxyFunc = http.ProxyFromEnvironment
	}
	proxyURL, err := proxyFunc(req)
	if err != nil {
		return nil, fmt.Errorf("websocket: choosing a proxy: %w", err)
	}
	addr := hostPort(u)
	var nc net.Conn
	if proxyURL == nil {
		nc, err = dial(ctx, "tcp", addr)
		if err != nil {
			return nil, dialError(ctx, "connecting to "+addr, err)
		}
	} else {
		nc, err = dialProxy(ctx, dial, proxyURL, addr, opts.TLSConfig)
		if err != nil {
			return nil, err
		}
	}
	if u.Scheme != "wss" {
		return nc, nil
	}
	cfg := &tls.Config{}
	if opts.TLSConfig != nil {
		cfg = opts.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, dialError(ctx, "TLS handshake with "+addr, err)
	}
	return tc, nil
}

// dialProxy opens a tunnel to addr through the HTTP proxy at proxyURL with
// CONNECT. An https:// proxy is reached over TLS.
func dialProxy(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error),
	proxyURL *url.URL, addr string, tlsConfig *tls.Config) (net.Conn, error) {
	proxyAddr := hostPort(proxyURL)
	nc, err := dial(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, dialError(ctx, "connecting to proxy "+proxyAddr, err)
	}
	if proxyURL.Scheme == "https" {
		cfg := &tls.Config{}
		if tlsConfig != nil {
			cfg = tlsConfig.Clone()
		}
		cfg.ServerName = proxyURL.Hostname()
		cfg.NextProtos = nil
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, dialError(ctx, "TLS handshake with proxy "+proxyAddr, err)
		}
		nc = tc
	}
	stop := watchContext(ctx, nc)
	connect := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: make(http.Header),
	}
	if user := proxyURL.User; user != nil {
		pass, _ := user.Password()
		connect.Header.Set("Proxy-Authorization", "Basic "+
			base64.StdEncoding.EncodeToString([]byte(user.Username()+":"+pass)))
	}
	err = connect.Write(nc)
	var resp *http.Response
	if err == nil {
		// The proxy says nothing after its response until we speak, so
		// reading byte by byte loses nothing.
		resp, err = http.ReadResponse(bufio.NewReaderSize(oneByteReader{nc}, 16), connect)
	}
	if stopped := stop(); !stopped && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		nc.Close()
		return nil, dialError(ctx, "CONNECT through proxy "+proxyAddr, err)
	}
	// The response's body is not closed: a 200 to CONNECT has no length,
	// so closing it would drain the tunnel itself.
	if resp.StatusCode != http.StatusOK {
		nc.Close()
		return nil, fmt.Errorf("websocket: proxy %s refused CONNECT to %s: %s", proxyAddr, addr, resp.Status)
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, nil
}

// oneByteReader reads at most one byte at a time, so that a buffered reader
// on top of it never reads past what it is asked for.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// watchContext applies ctx's deadline to nc and closes off its I/O when ctx
// is cancelled, until stop is called; stop reports whether ctx had not
// fired by then.
func watchContext(ctx context.Context, nc net.Conn) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { _ = nc.SetDeadline(aLongTimeAgo) })
}

// dialError reports a failed step of Dial, preferring the context's error
// when the context ended it.
func dialError(ctx context.Context, step string, err error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return fmt.Errorf("websocket: dial: %s: %w", step, contextError(ctx, err))
}
