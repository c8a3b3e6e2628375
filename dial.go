package websocket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// DialOptions configures [Dial]. The zero value (or nil) dials directly or
// through the proxy the environment names, without subprotocol, compression
// or cookies, verifying TLS certificates against the system roots, and does
// not follow redirects.
type DialOptions struct {
	// HTTPHeader holds extra headers for the handshake request, such as
	// Origin, Authorization or Cookie. The headers the handshake itself
	// needs are set by Dial and must not be given here. Nil means none.
	//
	// When a redirect leads to another host (host and port differ from
	// the URL given to Dial), Authorization, Cookie, Proxy-Authorization
	// and a Host override are not sent there, nor on any later hop.
	HTTPHeader http.Header

	// Subprotocols lists the subprotocols to offer, most preferred first.
	// Nil offers none. Each name must be a non-empty HTTP token (no
	// spaces, commas, slashes or other separators) and appear only once,
	// as RFC 6455 §4.1 requires; otherwise Dial fails before connecting.
	Subprotocols []string

	// Compression offers permessage-deflate (RFC 7692). Nil does not.
	Compression *CompressionOptions

	// TLSConfig configures TLS with the server for wss:// URLs. Nil means
	// the defaults: the certificate is verified against the system roots
	// for the URL's host. Its NextProtos are replaced by "http/1.1". It
	// is not used with an https:// proxy; see ProxyTLSConfig.
	TLSConfig *tls.Config

	// Jar, if not nil, supplies cookies for each handshake request and
	// stores the cookies set by each handshake response, redirects
	// included, as [http.Client] does. The jar sees the URLs with http
	// and https in place of ws and wss. Its cookies are added to any
	// Cookie header in HTTPHeader. Nil means no cookies besides
	// HTTPHeader's, and Set-Cookie headers are ignored.
	Jar http.CookieJar

	// MaxRedirects is how many redirects Dial follows: responses 301,
	// 302, 303, 307 and 308 with a Location, relative or absolute, each
	// followed over a new connection. An http:// or https:// Location is
	// dialled as ws:// or wss://; a redirect from wss:// to ws:// is
	// refused. The default, 0, follows none, as browsers do: the redirect
	// comes back as a *[HandshakeError] with the response. Past the
	// limit, Dial fails with a *HandshakeError holding the last redirect.
	MaxRedirects int

	// Proxy returns the HTTP proxy to tunnel through with CONNECT for a
	// request, or nil for none; the request's URL has scheme http or
	// https. It is called for every hop of a redirect chain. Nil means
	// [http.ProxyFromEnvironment]. Credentials in the proxy URL are sent
	// as Basic authorization.
	Proxy func(*http.Request) (*url.URL, error)

	// ProxyTLSConfig configures TLS with an https:// proxy. Nil means the
	// defaults: the proxy's certificate is verified against the system
	// roots for the proxy URL's host (an empty ServerName means that host
	// too). TLSConfig is never used for the proxy, so the proxy is not
	// trusted on the server's terms, nor offered client certificates
	// meant for the server.
	ProxyTLSConfig *tls.Config

	// NetDialContext dials the TCP connection (to the server or the
	// proxy). Nil means a [net.Dialer] with a 30-second keep-alive.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// maxErrorBody is how much of a refusing response's body Dial keeps.
const maxErrorBody = 64 << 10

// Dial opens a WebSocket connection to a ws:// or wss:// URL (RFC 6455 §4.1).
// ctx bounds everything up to the end of the opening handshake: name
// resolution, the TCP connection, the proxy tunnel, TLS and the handshake,
// for every hop of a redirect chain; the connection, once open, outlives it.
//
// It returns the server's handshake response too (the last one, after
// redirects); when the server refuses the upgrade, or redirects where
// [DialOptions.MaxRedirects] does not let Dial follow, the error is a
// *[HandshakeError] and the response's body (up to 64 KiB) is readable, so
// the caller can see why.
func Dial(ctx context.Context, rawURL string, opts *DialOptions) (*Conn, *http.Response, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("websocket: bad URL: %w", err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, nil, errBadScheme
	}
	if err := checkSubprotocols(opts.Subprotocols); err != nil {
		return nil, nil, err
	}
	header, origin := opts.HTTPHeader, hostPort(u)
	for redirects := 0; ; redirects++ {
		c, resp, err := handshake(ctx, u, header, opts)
		var herr *HandshakeError
		if !errors.As(err, &herr) {
			return c, resp, err
		}
		next, reason := redirectTarget(u, resp, redirects, opts.MaxRedirects)
		if next != nil {
			resp.Body.Close()
			if !strings.EqualFold(hostPort(next), origin) {
				header = withoutCredentials(header)
			}
			u = next
			continue
		}
		if reason != "" {
			herr.Reason = reason
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		herr.Response = resp
		return nil, resp, herr
	}
}

// handshake dials u and sends it an opening handshake request. When the
// server switches protocols it returns the connection. When its response
// fails checkResponse, it returns the response and a *HandshakeError; the
// response's body then reads from the connection, which closing the body
// closes (without draining it). Cookies the response sets go to opts.Jar.
func handshake(ctx context.Context, u *url.URL, header http.Header, opts *DialOptions) (*Conn, *http.Response, error) {
	httpURL := *u
	httpURL.Scheme = "http"
	if u.Scheme == "wss" {
		httpURL.Scheme = "https"
	}
	httpURL.Fragment = ""

	key := newChallengeKey()
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &httpURL,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, len(header)+7),
		Host:       u.Host,
	}
	for k, vs := range header {
		if strings.EqualFold(k, "Host") {
			if len(vs) > 0 {
				req.Host = vs[0]
			}
			continue
		}
		req.Header[k] = vs
	}
	if opts.Jar != nil {
		// AddCookie joins these to a Cookie header from HTTPHeader with
		// Header.Set, which leaves the caller's slice alone.
		for _, c := range opts.Jar.Cookies(&httpURL) {
			req.AddCookie(c)
		}
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
	stop := watchContext(ctx, nc)
	fail := func(err error) (*Conn, *http.Response, error) {
		stop()
		nc.Close()
		return nil, nil, err
	}

	if err := req.Write(nc); err != nil {
		return fail(dialError(ctx, "sending the handshake request", err))
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return fail(dialError(ctx, "reading the handshake response", err))
	}
	if opts.Jar != nil {
		if cookies := resp.Cookies(); len(cookies) > 0 {
			opts.Jar.SetCookies(&httpURL, cookies)
		}
	}
	subprotocol, ext, herr := checkResponse(resp, key, opts)
	if herr != nil {
		// Still watched by ctx, the body can be read; closing it
		// ends the watch and the connection.
		resp.Body = connBody{resp.Body, func() error { stop(); return nc.Close() }}
		return nil, resp, herr
	}
	var buffered []byte
	if n := br.Buffered(); n > 0 {
		buffered, _ = br.Peek(n)
	}
	if !stop() {
		nc.Close()
		return nil, nil, dialError(ctx, "handshake", ctx.Err())
	}
	_ = nc.SetDeadline(time.Time{})
	return newConn(nc, false, buffered, subprotocol, ext), resp, nil
}

// connBody is the body of a handshake response that Dial refuses. Its Close
// closes the connection instead of draining the body, which may never end.
type connBody struct {
	io.Reader
	close func() error
}

func (b connBody) Close() error { return b.close() }

// redirectTarget returns where a redirect response to a request for u
// leads, if Dial is to follow it (this being redirect number redirects+1,
// with limit allowed). When it is not to, it returns nil and why not, or ""
// if resp is not a redirect at all.
func redirectTarget(u *url.URL, resp *http.Response, redirects, limit int) (*url.URL, string) {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil, ""
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, ""
	}
	if limit <= 0 {
		return nil, fmt.Sprintf("server redirects to %q; DialOptions.MaxRedirects is %d, so Dial does not follow", loc, limit)
	}
	if redirects >= limit {
		return nil, fmt.Sprintf("too many redirects: followed %d (DialOptions.MaxRedirects), and the server redirects again to %q", redirects, loc)
	}
	next, err := u.Parse(loc)
	if err != nil || next.Host == "" {
		return nil, fmt.Sprintf("server redirects to %q, which is not a URL Dial can follow", loc)
	}
	switch next.Scheme {
	case "ws", "wss":
	case "http":
		next.Scheme = "ws"
	case "https":
		next.Scheme = "wss"
	default:
		return nil, fmt.Sprintf("server redirects to %q, which is not a ws, wss, http or https URL", loc)
	}
	if u.Scheme == "wss" && next.Scheme == "ws" {
		return nil, fmt.Sprintf("server redirects from wss to %q, which would drop TLS; Dial refuses the downgrade", loc)
	}
	next.Fragment, next.RawFragment = "", ""
	return next, ""
}

// withoutCredentials returns h without the headers that must not follow a
// redirect to another host: credentials and a Host override. h is left
// alone.
func withoutCredentials(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vs := range h {
		switch http.CanonicalHeaderKey(k) {
		case "Authorization", "Proxy-Authorization", "Cookie", "Host":
			continue
		}
		out[k] = vs
	}
	return out
}

// checkSubprotocols applies RFC 6455 §4.1 to the subprotocols a client
// offers: non-empty tokens, each offered once. A name outside that would
// make the server misread the list (a comma splits it, a space ends a
// token) or refuse the request, so it is the caller's mistake to report,
// not something to send.
func checkSubprotocols(names []string) error {
	for i, name := range names {
		if name == "" {
			return fmt.Errorf("websocket: DialOptions.Subprotocols[%d] is empty; a subprotocol name must be a non-empty token (RFC 6455 §4.1)", i)
		}
		if !validToken(name) {
			j := 0
			for validToken(name[j : j+1]) {
				j++
			}
			bad, _ := utf8.DecodeRuneInString(name[j:])
			return fmt.Errorf("websocket: subprotocol %q (DialOptions.Subprotocols[%d]) is not a token: it contains %q; use letters, digits and !#$%%&'*+-.^_`|~ only (RFC 6455 §4.1)", name, i, bad)
		}
		for j, prev := range names[:i] {
			if prev == name {
				return fmt.Errorf("websocket: subprotocol %q is offered twice (DialOptions.Subprotocols[%d] and [%d]); offer each name once (RFC 6455 §4.1)", name, j, i)
			}
		}
	}
	return nil
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
		nc, err = dialProxy(ctx, dial, proxyURL, addr, opts.ProxyTLSConfig)
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
// CONNECT. An https:// proxy is reached over TLS configured by tlsConfig
// (DialOptions.ProxyTLSConfig).
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
		if cfg.ServerName == "" {
			cfg.ServerName = proxyURL.Hostname()
		}
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
