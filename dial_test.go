package websocket_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// proxyStats counts what a test proxy saw.
type proxyStats struct {
	tunnels     atomic.Int32 // CONNECT tunnels opened
	clientCerts atomic.Int32 // TLS client certificates presented to the proxy
}

// connectProxy is an HTTP proxy that tunnels CONNECT requests carrying the
// expected Basic credentials. With cert it is an https:// proxy that asks
// clients for (but does not require) a certificate.
func connectProxy(t *testing.T, user, pass string, cert *tls.Certificate, stats *proxyStats) *url.URL {
	t.Helper()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			stats.clientCerts.Add(int32(len(r.TLS.PeerCertificates)))
		}
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		if r.Header.Get("Proxy-Authorization") != want {
			http.Error(w, "bad credentials", http.StatusProxyAuthRequired)
			return
		}
		upstream, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		client, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			upstream.Close()
			return
		}
		stats.tunnels.Add(1)
		brw.Flush()
		go func() {
			io.Copy(upstream, brw)
			upstream.Close()
		}()
		io.Copy(client, upstream)
		client.Close()
	}))
	if cert != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}, ClientAuth: tls.RequestClientCert}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	u.User = url.UserPassword(user, pass)
	return u
}

// Dial tunnels through an HTTP proxy with CONNECT, sending the proxy URL's
// credentials, and reports a proxy's refusal.
func TestDialThroughProxy(t *testing.T) {
	target := startServer(t, echoHandler(t, nil, 0, nil))
	var stats proxyStats
	proxy := connectProxy(t, "alice", "s3cret", nil, &stats)
	ctx := testContext(t)

	c, _, err := websocket.Dial(ctx, target, &websocket.DialOptions{Proxy: http.ProxyURL(proxy)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("via proxy")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "via proxy" {
		t.Fatalf("%q, %v", msg, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	if n := stats.tunnels.Load(); n != 1 {
		t.Fatalf("proxy opened %d tunnels, want 1", n)
	}

	wrong := *proxy
	wrong.User = url.UserPassword("alice", "wrong")
	if _, _, err := websocket.Dial(ctx, target, &websocket.DialOptions{Proxy: http.ProxyURL(&wrong)}); err == nil {
		t.Fatal("Dial succeeded with wrong proxy credentials")
	}
}

// Dial uses the caller's dial function, and its context bounds it.
func TestDialCustomDialerAndContext(t *testing.T) {
	target := startServer(t, echoHandler(t, nil, 0, nil))
	var dials atomic.Int32
	opts := &websocket.DialOptions{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	c, _, err := websocket.Dial(testContext(t), target, opts)
	if err != nil {
		t.Fatal(err)
	}
	c.CloseNow()
	if dials.Load() != 1 {
		t.Fatalf("custom dialer called %d times", dials.Load())
	}

	// A server that accepts TCP but never answers the handshake: the
	// context's deadline ends Dial.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if nc, err := ln.Accept(); err == nil {
			defer nc.Close()
			io.Copy(io.Discard, nc)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*1e6)
	defer cancel()
	if _, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a silent server returned %v", err)
	}
}

// Dial reaches ws:// and wss:// servers through an https:// proxy (TLS
// inside TLS for wss), verifying the proxy with ProxyTLSConfig and the
// server with TLSConfig, never one with the other's.
func TestDialHTTPSProxy(t *testing.T) {
	wsTarget := startServer(t, echoHandler(t, nil, 0, nil))
	tlsServer := httptest.NewTLSServer(echoHandler(t, nil, 0, nil))
	t.Cleanup(tlsServer.Close)
	wssTarget := "wss" + strings.TrimPrefix(tlsServer.URL, "https")
	serverPool := x509.NewCertPool()
	serverPool.AddCert(tlsServer.Certificate())

	proxyCert, proxyPool := websocket.SelfSignedCert(t, "duplex test proxy")
	bothPool := serverPool.Clone()
	bothPool.AddCert(proxyCert.Leaf)
	clientCert, _ := websocket.SelfSignedCert(t, "duplex test client")

	tests := []struct {
		name           string
		target         string
		tlsConfig      *tls.Config
		proxyTLSConfig *tls.Config
		password       string
		wantErr        string // "" for success
		wantUnknownCA  bool
	}{
		{name: "ws via https proxy", target: wsTarget,
			proxyTLSConfig: &tls.Config{RootCAs: proxyPool}},
		{name: "wss via https proxy", target: wssTarget,
			tlsConfig:      &tls.Config{RootCAs: serverPool, Certificates: []tls.Certificate{clientCert}},
			proxyTLSConfig: &tls.Config{RootCAs: proxyPool}},
		{name: "TLSConfig does not verify the proxy", target: wssTarget,
			tlsConfig: &tls.Config{RootCAs: bothPool},
			wantErr:   "TLS handshake with proxy", wantUnknownCA: true},
		{name: "ProxyTLSConfig does not verify the server", target: wssTarget,
			proxyTLSConfig: &tls.Config{RootCAs: bothPool},
			wantErr:        "TLS handshake with 127.0.0.1", wantUnknownCA: true},
		{name: "wrong proxy credentials", target: wssTarget, password: "wrong",
			tlsConfig:      &tls.Config{RootCAs: serverPool},
			proxyTLSConfig: &tls.Config{RootCAs: proxyPool},
			wantErr:        "407"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stats proxyStats
			proxy := connectProxy(t, "alice", "s3cret", &proxyCert, &stats)
			if proxy.Scheme != "https" {
				t.Fatalf("proxy URL %s is not https", proxy)
			}
			if tt.password != "" {
				proxy.User = url.UserPassword("alice", tt.password)
			}
			ctx := testContext(t)
			c, _, err := websocket.Dial(ctx, tt.target, &websocket.DialOptions{
				Proxy:          http.ProxyURL(proxy),
				TLSConfig:      tt.tlsConfig,
				ProxyTLSConfig: tt.proxyTLSConfig,
			})
			if tt.wantErr != "" {
				if err == nil {
					c.CloseNow()
					t.Fatalf("Dial succeeded, want an error with %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Dial error %q does not say %q", err, tt.wantErr)
				}
				var unknownCA x509.UnknownAuthorityError
				if tt.wantUnknownCA && !errors.As(err, &unknownCA) {
					t.Fatalf("Dial error %v is not an x509.UnknownAuthorityError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if err := c.Write(ctx, websocket.MessageText, []byte("via https proxy")); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := c.Read(ctx); err != nil || string(msg) != "via https proxy" {
				t.Fatalf("%q, %v", msg, err)
			}
			c.Close(websocket.StatusNormalClosure, "")
			if n := stats.tunnels.Load(); n != 1 {
				t.Fatalf("proxy opened %d tunnels, want 1", n)
			}
			if n := stats.clientCerts.Load(); n != 0 {
				t.Fatalf("the server's client certificate was offered to the proxy (%d certificates)", n)
			}
		})
	}
}

// seenRequest is what a redirect test's WebSocket endpoint saw.
type seenRequest struct {
	host, uri string
	header    http.Header
}

// site is a loopback server for redirect tests. /ws accepts a WebSocket
// handshake, echoes, and reports the request on seen; /redirect answers with
// the status and Location its query gives (code, to), and a body. Both set
// the cookie a setcookie query parameter gives.
type site struct {
	srv  *httptest.Server
	seen chan seenRequest
}

// newSite starts a site listening on addr ("127.0.0.1:0", say), with TLS if
// secure. It skips the test if addr cannot be listened on.
func newSite(t *testing.T, addr string, secure bool) *site {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	s := &site{seen: make(chan seenRequest, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		s.seen <- seenRequest{r.Host, r.RequestURI, r.Header.Clone()}
		if c := r.FormValue("setcookie"); c != "" {
			w.Header().Add("Set-Cookie", c)
		}
		echoHandler(t, &websocket.AcceptOptions{InsecureSkipOriginCheck: true}, 0, nil)(w, r)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.FormValue("code"))
		if to := r.FormValue("to"); to != "" {
			w.Header().Set("Location", to)
		}
		if c := r.FormValue("setcookie"); c != "" {
			w.Header().Add("Set-Cookie", c)
		}
		w.WriteHeader(code)
		io.WriteString(w, "redirecting")
	})
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.Listener.Close()
	s.srv.Listener = ln
	if secure {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	t.Cleanup(s.srv.Close)
	return s
}

// url returns the URL of path on s with scheme ws or wss.
func (s *site) url(path string) string {
	if s.srv.TLS != nil {
		return "wss://" + s.srv.Listener.Addr().String() + path
	}
	return "ws://" + s.srv.Listener.Addr().String() + path
}

// redirect returns the URL on s that redirects with code to location.
func (s *site) redirect(code int, location string) string {
	return s.url("/redirect?code=" + strconv.Itoa(code) + "&to=" + url.QueryEscape(location))
}

// httpURL returns the URL of path on s with scheme http or https.
func (s *site) httpURL(path string) string { return s.srv.URL + path }

// countingDialer dials TCP and counts the connections it opened and the
// ones that were closed.
type countingDialer struct{ dials, closes atomic.Int32 }

func (d *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.dials.Add(1)
	return &countedConn{Conn: nc, closes: &d.closes}, nil
}

type countedConn struct {
	net.Conn
	once   sync.Once
	closes *atomic.Int32
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.closes.Add(1) })
	return c.Conn.Close()
}

// Dial follows redirects as far as MaxRedirects allows, each over a new
// connection, resolving relative locations, mapping http(s) to ws(s),
// keeping credentials on the same host and dropping them for good once the
// chain leaves it, and refusing a downgrade from wss to ws.
func TestDialRedirect(t *testing.T) {
	a := newSite(t, "127.0.0.1:0", false)
	b := newSite(t, "127.0.0.1:0", false) // another host: same IP, another port
	s := newSite(t, "127.0.0.1:0", true)
	aPort := a.srv.Listener.Addr().(*net.TCPAddr).Port
	pool := x509.NewCertPool()
	pool.AddCert(s.srv.Certificate())
	var c *site // on 127.0.0.2, made by the case that needs it

	tests := []struct {
		name         string
		url          func(*testing.T) string
		maxRedirects int
		reached      func() *site // the site whose /ws answers; nil for an error
		wantURI      string
		keepsCreds   bool
		dials        int32
		wantStatus   int    // for a *HandshakeError
		wantErr      string // part of the error
	}{
		{name: "302 relative path", maxRedirects: 1, dials: 2, keepsCreds: true,
			url:     func(*testing.T) string { return a.redirect(302, "/ws?x=1") },
			reached: func() *site { return a }, wantURI: "/ws?x=1"},
		{name: "301 relative to the directory", maxRedirects: 1, dials: 2, keepsCreds: true,
			url:     func(*testing.T) string { return a.redirect(301, "ws") },
			reached: func() *site { return a }, wantURI: "/ws"},
		{name: "303 http scheme on the same host", maxRedirects: 1, dials: 2, keepsCreds: true,
			url:     func(*testing.T) string { return a.redirect(303, a.httpURL("/ws")) },
			reached: func() *site { return a }, wantURI: "/ws"},
		{name: "307 scheme-relative", maxRedirects: 1, dials: 2, keepsCreds: true,
			url:     func(*testing.T) string { return a.redirect(307, "//"+a.srv.Listener.Addr().String()+"/ws") },
			reached: func() *site { return a }, wantURI: "/ws"},
		{name: "308 to another port strips credentials", maxRedirects: 1, dials: 2,
			url:     func(*testing.T) string { return a.redirect(308, b.url("/ws")) },
			reached: func() *site { return b }, wantURI: "/ws"},
		{name: "302 to another IP on the same port strips credentials", maxRedirects: 1, dials: 2,
			url: func(t *testing.T) string {
				c = newSite(t, "127.0.0.2:"+strconv.Itoa(aPort), false)
				return a.redirect(302, c.url("/ws"))
			},
			reached: func() *site { return c }, wantURI: "/ws"},
		{name: "credentials stay dropped back on the first host", maxRedirects: 2, dials: 3,
			url:     func(*testing.T) string { return a.redirect(302, b.redirect(302, a.url("/ws"))) },
			reached: func() *site { return a }, wantURI: "/ws"},
		{name: "ws to wss upgrade", maxRedirects: 1, dials: 2,
			url:     func(*testing.T) string { return a.redirect(302, s.httpURL("/ws")) },
			reached: func() *site { return s }, wantURI: "/ws"},
		{name: "wss to wss on the same host", maxRedirects: 1, dials: 2, keepsCreds: true,
			url:     func(*testing.T) string { return s.redirect(307, "/ws") },
			reached: func() *site { return s }, wantURI: "/ws"},
		{name: "exactly at the limit", maxRedirects: 3, dials: 4, keepsCreds: true,
			url:     func(*testing.T) string { return a.redirect(302, a.redirect(301, a.redirect(307, "/ws"))) },
			reached: func() *site { return a }, wantURI: "/ws"},

		{name: "not followed by default", dials: 1, wantStatus: 302,
			url:     func(*testing.T) string { return a.redirect(302, "/ws") },
			wantErr: "MaxRedirects is 0"},
		{name: "limit exceeded", maxRedirects: 2, dials: 3, wantStatus: 302,
			url:     func(*testing.T) string { return a.redirect(302, a.redirect(302, a.redirect(302, "/ws"))) },
			wantErr: "too many redirects"},
		{name: "wss to ws refused", maxRedirects: 1, dials: 1, wantStatus: 302,
			url:     func(*testing.T) string { return s.redirect(302, a.url("/ws")) },
			wantErr: "refuses the downgrade"},
		{name: "wss to http refused", maxRedirects: 1, dials: 1, wantStatus: 301,
			url:     func(*testing.T) string { return s.redirect(301, a.httpURL("/ws")) },
			wantErr: "refuses the downgrade"},
		{name: "unsupported scheme", maxRedirects: 1, dials: 1, wantStatus: 302,
			url:     func(*testing.T) string { return a.redirect(302, "ftp://127.0.0.1/ws") },
			wantErr: "not a ws, wss, http or https URL"},
		{name: "no Location", maxRedirects: 1, dials: 1, wantStatus: 302,
			url:     func(*testing.T) string { return a.redirect(302, "") },
			wantErr: "instead of 101"},
		{name: "300 is not followed", maxRedirects: 1, dials: 1, wantStatus: 300,
			url:     func(*testing.T) string { return a.redirect(300, "/ws") },
			wantErr: "instead of 101"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c = nil
			target := tt.url(t)
			var d countingDialer
			header := http.Header{
				"Authorization":       {"Bearer t0k"},
				"Cookie":              {"pref=dark"},
				"Proxy-Authorization": {"Basic eDp5"},
				"Origin":              {"http://app.test"},
				"X-Trace":             {"1"},
			}
			ctx := testContext(t)
			conn, resp, err := websocket.Dial(ctx, target, &websocket.DialOptions{
				HTTPHeader:     header,
				MaxRedirects:   tt.maxRedirects,
				TLSConfig:      &tls.Config{RootCAs: pool},
				NetDialContext: d.DialContext,
			})
			if n := d.dials.Load(); n != tt.dials {
				t.Errorf("Dial made %d connections, want %d", n, tt.dials)
			}
			if err == nil {
				// All but the last connection are closed by now.
				if n := d.closes.Load(); n != tt.dials-1 {
					t.Errorf("%d of %d connections closed when Dial returned, want %d", n, tt.dials, tt.dials-1)
				}
				conn.CloseNow()
			} else if n := d.closes.Load(); n != tt.dials {
				t.Errorf("%d of %d connections closed after Dial failed", n, tt.dials)
			}

			if tt.wantErr != "" {
				var herr *websocket.HandshakeError
				if !errors.As(err, &herr) {
					t.Fatalf("Dial returned %v, want a *HandshakeError", err)
				}
				if herr.Status != tt.wantStatus || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Dial returned %q (status %d), want status %d and %q", err, herr.Status, tt.wantStatus, tt.wantErr)
				}
				if resp == nil || herr.Response != resp {
					t.Fatal("the error does not carry the response Dial returned")
				}
				if body, _ := io.ReadAll(resp.Body); string(body) != "redirecting" {
					t.Fatalf("response body %q", body)
				}
				for _, x := range []*site{a, b, s} {
					if len(x.seen) != 0 {
						t.Fatalf("a WebSocket endpoint was reached: %+v", <-x.seen)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("Dial returned response %q", resp.Status)
			}
			var got seenRequest
			select {
			case got = <-tt.reached().seen:
			default:
				t.Fatal("the expected site's /ws was not reached")
			}
			for _, x := range []*site{a, b, s, c} {
				if x == nil {
					continue
				}
				if len(x.seen) != 0 {
					t.Fatalf("another /ws was reached too: %+v", <-x.seen)
				}
			}
			if got.uri != tt.wantURI {
				t.Errorf("reached %q, want %q", got.uri, tt.wantURI)
			}
			for _, k := range []string{"Origin", "X-Trace"} {
				if got.header.Get(k) != header.Get(k) {
					t.Errorf("%s: %q, want %q", k, got.header.Get(k), header.Get(k))
				}
			}
			for _, k := range []string{"Authorization", "Cookie", "Proxy-Authorization"} {
				v := got.header.Get(k)
				if tt.keepsCreds && v != header.Get(k) {
					t.Errorf("same host: %s is %q, want %q", k, v, header.Get(k))
				}
				if !tt.keepsCreds && v != "" {
					t.Errorf("another host got %s: %q", k, v)
				}
			}
			if len(header) != 5 || header.Get("Authorization") != "Bearer t0k" || header.Get("Cookie") != "pref=dark" {
				t.Errorf("Dial changed the caller's HTTPHeader: %v", header)
			}
		})
	}
}

// The context bounds the whole redirect chain, not each hop.
func TestDialRedirectContext(t *testing.T) {
	var hops atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hops.Add(1)
		time.Sleep(30 * time.Millisecond)
		w.Header().Set("Location", r.URL.Path)
		w.WriteHeader(http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/loop", &websocket.DialOptions{MaxRedirects: 1000})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial through an endless redirect loop returned %v", err)
	}
	if n := hops.Load(); n < 2 {
		t.Fatalf("only %d hops before the deadline", n)
	}
}

// recordingJar is a cookie jar that records the URLs it is asked about.
type recordingJar struct {
	http.CookieJar
	mu      sync.Mutex
	schemes []string // of the URLs passed to Cookies, in order
}

func (j *recordingJar) Cookies(u *url.URL) []*http.Cookie {
	j.mu.Lock()
	j.schemes = append(j.schemes, u.Scheme)
	j.mu.Unlock()
	return j.CookieJar.Cookies(u)
}

// Dial sends the jar's cookies for each hop, joined to a Cookie header of
// its own, and stores what handshake responses set, redirects included; the
// jar sees http and https URLs.
func TestDialJar(t *testing.T) {
	a := newSite(t, "127.0.0.1:0", false)
	s := newSite(t, "127.0.0.1:0", true)
	pool := x509.NewCertPool()
	pool.AddCert(s.srv.Certificate())
	var c *site // on 127.0.0.2, made by the case that needs it
	aPort := a.srv.Listener.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name        string
		url         func(*testing.T) string
		reached     func() *site // nil: the handshake fails
		wantSchemes []string     // of the URLs the jar is asked for cookies
		wantSent    []string     // cookies the last hop's request carries, in order
		wantStored  []string     // cookies the jar then holds for the last hop's URL
	}{
		{name: "ws: jar cookies join the header's, 101 sets one",
			url:         func(*testing.T) string { return a.url("/ws?setcookie=" + url.QueryEscape("token=xyz")) },
			reached:     func() *site { return a },
			wantSchemes: []string{"http"},
			wantSent:    []string{"pref=dark", "session=abc"},
			wantStored:  []string{"session=abc", "token=xyz"}},
		{name: "wss: the jar sees https",
			url:         func(*testing.T) string { return s.url("/ws?setcookie=" + url.QueryEscape("tls=1")) },
			reached:     func() *site { return s },
			wantSchemes: []string{"https"},
			wantSent:    []string{"pref=dark", "session=abc"},
			wantStored:  []string{"session=abc", "tls=1"}},
		{name: "a redirect's cookie goes to the next hop",
			url:         func(*testing.T) string { return a.redirect(302, "/ws?x=1") + "&setcookie=hop%3D1" },
			reached:     func() *site { return a },
			wantSchemes: []string{"http", "http"},
			wantSent:    []string{"pref=dark", "session=abc", "hop=1"},
			wantStored:  []string{"session=abc", "hop=1"}},
		{name: "ws to wss on another port: the jar's cookies, not the header's",
			url:         func(*testing.T) string { return a.redirect(307, s.httpURL("/ws")) + "&setcookie=hop%3D1" },
			reached:     func() *site { return s },
			wantSchemes: []string{"http", "https"},
			wantSent:    []string{"session=abc", "hop=1"},
			wantStored:  []string{"session=abc", "hop=1"}},
		{name: "another host gets its own cookies only",
			url: func(t *testing.T) string {
				c = newSite(t, "127.0.0.2:"+strconv.Itoa(aPort), false)
				return a.redirect(302, c.url("/ws")) + "&setcookie=hop%3D1"
			},
			reached:     func() *site { return c },
			wantSchemes: []string{"http", "http"},
			wantSent:    []string{"other=2"},
			wantStored:  []string{"other=2"}},
		{name: "a refusal's cookie is stored too",
			url:         func(*testing.T) string { return a.redirect(403, "") + "&setcookie=denied%3D1" },
			wantSchemes: []string{"http"},
			wantStored:  []string{"session=abc", "denied=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c = nil
			target := tt.url(t)
			cj, err := cookiejar.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			jar := &recordingJar{CookieJar: cj}
			for host, cookie := range map[string]*http.Cookie{
				"127.0.0.1": {Name: "session", Value: "abc"},
				"127.0.0.2": {Name: "other", Value: "2"},
			} {
				jar.SetCookies(&url.URL{Scheme: "http", Host: host, Path: "/"}, []*http.Cookie{cookie})
			}

			ctx := testContext(t)
			conn, resp, err := websocket.Dial(ctx, target, &websocket.DialOptions{
				HTTPHeader:   http.Header{"Cookie": {"pref=dark"}},
				Jar:          jar,
				MaxRedirects: 1,
				TLSConfig:    &tls.Config{RootCAs: pool},
			})
			if tt.reached == nil {
				if err == nil {
					conn.CloseNow()
					t.Fatal("Dial succeeded")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				conn.CloseNow()
				var got seenRequest
				select {
				case got = <-tt.reached().seen:
				default:
					t.Fatal("the expected site's /ws was not reached")
				}
				if n := len(got.header.Values("Cookie")); n != 1 {
					t.Errorf("%d Cookie headers, want 1: %q", n, got.header.Values("Cookie"))
				}
				sent := (&http.Request{Header: got.header}).Cookies()
				if s := cookieStrings(sent); !equalStrings(s, tt.wantSent) {
					t.Errorf("server got cookies %q, want %q", s, tt.wantSent)
				}
			}
			if !equalStrings(jar.schemes, tt.wantSchemes) {
				t.Errorf("the jar saw URLs with schemes %q, want %q", jar.schemes, tt.wantSchemes)
			}
			last := resp.Request.URL
			if s := cookieStrings(jar.Cookies(last)); !sameStrings(s, tt.wantStored) {
				t.Errorf("jar holds %q for %s, want %q", s, last, tt.wantStored)
			}
		})
	}
}

func cookieStrings(cs []*http.Cookie) []string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.Name + "=" + c.Value
	}
	return s
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

// sameStrings reports whether a and b hold the same strings in any order.
func sameStrings(a, b []string) bool {
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	return equalStrings(a, b)
}

// RFC 6455 §4.1: the subprotocol names a client offers "MUST be non-empty
// strings with characters in the range U+0021 to U+007E not including
// separator characters as defined in [RFC2616] and MUST all be unique
// strings." Dial refuses any other list before it connects, saying which
// name is wrong and why.
func TestDialSubprotocolsMustBeUniqueTokens(t *testing.T) {
	noDial := func(context.Context, string, string) (net.Conn, error) {
		t.Error("Dial connected with subprotocols it should have refused")
		return nil, errors.New("no connection expected")
	}
	for _, tt := range []struct {
		name    string
		offer   []string
		wantErr []string // parts of the error
	}{
		{"empty", []string{"chat", ""}, []string{"Subprotocols[1] is empty"}},
		{"space", []string{"a b"}, []string{`"a b" (DialOptions.Subprotocols[0]) is not a token`, `' '`}},
		{"separator", []string{"chat", "x/y"}, []string{`"x/y" (DialOptions.Subprotocols[1]) is not a token`, `'/'`}},
		{"comma", []string{"chat,superchat"}, []string{`"chat,superchat"`, `','`}},
		{"beyond U+007E", []string{"café"}, []string{`"café"`, `'é'`}},
		{"repeated", []string{"chat", "superchat", "chat"}, []string{`"chat" is offered twice`, "Subprotocols[0] and [2]"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := &websocket.DialOptions{Subprotocols: tt.offer, NetDialContext: noDial}
			c, resp, err := websocket.Dial(testContext(t), "ws://127.0.0.1:1/", opts)
			if err == nil {
				c.CloseNow()
				t.Fatalf("Dial offering %q succeeded", tt.offer)
			}
			if c != nil || resp != nil {
				t.Errorf("Dial returned a Conn or response with error %v", err)
			}
			for _, want := range append(tt.wantErr, "websocket: ", "RFC 6455 §4.1") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Dial error %q does not say %q", err, want)
				}
			}
		})
	}

	// Every character a token allows, in a list with no repeats, is sent
	// as it is.
	url := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"v2.chat"}})
		if err == nil {
			c.CloseNow()
		}
	})
	var d countingDialer
	c, _, err := websocket.Dial(testContext(t), url, &websocket.DialOptions{
		Subprotocols:   []string{"Chat", "chat", "x!#$%&'*+-.^_`|~09AZaz", "v2.chat"},
		NetDialContext: d.DialContext,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.CloseNow()
	if c.Subprotocol() != "v2.chat" || d.dials.Load() != 1 {
		t.Fatalf("subprotocol %q after %d connections, want v2.chat after 1", c.Subprotocol(), d.dials.Load())
	}
}

// TestDialChecksTheResponse: RFC 6455 §4.1 lists what a client checks in
// the server's handshake response. Beside the status (1, see
// TestDialRedirect) and extensions (5, see the deflate tests):
//
//  2. If the response lacks an |Upgrade| header field or the |Upgrade|
//     header field contains a value that is not an ASCII case-
//     insensitive match for the value "websocket", the client MUST
//     _Fail the WebSocket Connection_.
//  3. If the response lacks a |Connection| header field or the
//     |Connection| header field doesn't contain a token that is an
//     ASCII case-insensitive match for the value "Upgrade", the client
//     MUST _Fail the WebSocket Connection_.
//  4. If the response lacks a |Sec-WebSocket-Accept| header field or
//     the |Sec-WebSocket-Accept| contains a value other than the
//     base64-encoded SHA-1 of the concatenation of the |Sec-WebSocket-
//     Key| (as a string, not base64-decoded) with the string "258EAFA5-
//     E914-47DA-95CA-C5AB0DC85B11" but ignoring any leading and
//     trailing whitespace, the client MUST _Fail the WebSocket
//     Connection_.
//  6. If the response includes a |Sec-WebSocket-Protocol| header field
//     and this header field indicates the use of a subprotocol that was
//     not present in the client's handshake (the server has indicated a
//     subprotocol not requested by the client), the client MUST _Fail
//     the WebSocket Connection_.
//
// A raw server answers 101 with the header fields of each case. Dial
// fails a bad response with a *HandshakeError naming the field, and closes
// the connection without writing to it; it accepts a good one whatever
// the letter case of names and tokens.
func TestDialChecksTheResponse(t *testing.T) {
	// key stands for the right Sec-WebSocket-Accept value; upgraded
	// holds the fields a server that upgrades must send.
	const (
		key        = "{accept}"
		upgrade    = "Upgrade: websocket\r\n"
		connection = "Connection: Upgrade\r\n"
		accept     = "Sec-WebSocket-Accept: " + key + "\r\n"
		upgraded   = upgrade + connection + accept
	)
	for _, tt := range []struct {
		name     string
		offer    []string // DialOptions.Subprotocols
		header   string   // of the 101 response
		wantErr  string   // part of the error; "" if Dial must succeed
		wantProt string   // the subprotocol, if Dial succeeds
	}{
		// 2. Upgrade
		{name: "no Upgrade", header: connection + accept, wantErr: `Upgrade header is ""`},
		{name: "Upgrade is not websocket", header: "Upgrade: h2c\r\n" + connection + accept, wantErr: `Upgrade header is "h2c"`},
		// 3. Connection
		{name: "no Connection", header: upgrade + accept, wantErr: `Connection header is ""`},
		{name: "Connection lacks upgrade", header: upgrade + "Connection: keep-alive\r\n" + accept,
			wantErr: `Connection header is "keep-alive"`},
		// 4. Sec-WebSocket-Accept
		{name: "no Sec-WebSocket-Accept", header: upgrade + connection, wantErr: `Sec-WebSocket-Accept "" does not answer our key`},
		{name: "Sec-WebSocket-Accept answers another key", // the RFC's sample key's
			header:  upgrade + connection + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
			wantErr: `Sec-WebSocket-Accept "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" does not answer our key`},
		// 6. Sec-WebSocket-Protocol
		{name: "subprotocol not offered", offer: []string{"chat"},
			header:  upgraded + "Sec-WebSocket-Protocol: superchat\r\n",
			wantErr: `subprotocol "superchat", which we did not offer`},
		{name: "subprotocol offered in another case", offer: []string{"chat"},
			header:  upgraded + "Sec-WebSocket-Protocol: Chat\r\n",
			wantErr: `subprotocol "Chat", which we did not offer`},
		{name: "subprotocol when none offered", header: upgraded + "Sec-WebSocket-Protocol: chat\r\n",
			wantErr: `subprotocol "chat", which we did not offer`},
		{name: "two subprotocols in two fields", offer: []string{"chat", "superchat"},
			header:  upgraded + "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: superchat\r\n",
			wantErr: `subprotocol "chat, superchat", which we did not offer`},
		{name: "two subprotocols in one field", offer: []string{"chat", "superchat"},
			header:  upgraded + "Sec-WebSocket-Protocol: chat, superchat\r\n",
			wantErr: `subprotocol "chat, superchat", which we did not offer`},

		{name: "just the fields a server must send", header: upgraded},
		{name: "names and tokens in other letter case",
			header: "UPGRADE: WebSocket\r\nconnection: uPGRADE\r\nsec-websocket-accept: " + key + "\r\n"},
		{name: "Connection is a token list", header: upgrade + "Connection: keep-alive, Upgrade\r\n" + accept},
		{name: "Sec-WebSocket-Accept with whitespace around it",
			header: upgrade + connection + "Sec-WebSocket-Accept: \t " + key + " \t\r\n"},
		{name: "an offered subprotocol chosen", offer: []string{"chat", "superchat"},
			header:   upgraded + "sec-websocket-PROTOCOL: superchat\r\n",
			wantProt: "superchat"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// After its response, the server reports how many bytes the
			// client sent before closing the connection.
			type after struct {
				n   int64
				err error
			}
			afters := make(chan after, 1)
			url := faultRawServer(t, func(nc *net.TCPConn, br *bufio.Reader) {
				defer nc.Close()
				req, err := http.ReadRequest(br)
				if err != nil {
					afters <- after{err: err}
					return
				}
				header := strings.ReplaceAll(tt.header, key, websocket.AcceptKey(req.Header.Get("Sec-WebSocket-Key")))
				if _, err := io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\n"+header+"\r\n"); err != nil {
					afters <- after{err: err}
					return
				}
				n, err := io.Copy(io.Discard, br)
				afters <- after{n, err}
			})

			c, resp, err := websocket.Dial(testContext(t), url, &websocket.DialOptions{Subprotocols: tt.offer})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				c.CloseNow()
				if resp.StatusCode != http.StatusSwitchingProtocols || c.Subprotocol() != tt.wantProt {
					t.Fatalf("response %q, subprotocol %q; want 101 and %q", resp.Status, c.Subprotocol(), tt.wantProt)
				}
				if a := faultAwait(t, afters, "end of the connection"); a.err != nil {
					t.Fatalf("server: %v", a.err)
				}
				return
			}
			if err == nil {
				c.CloseNow()
				t.Fatalf("Dial accepted a response whose %s", tt.name)
			}
			if c != nil {
				t.Errorf("Dial returned a Conn with error %v", err)
			}
			var herr *websocket.HandshakeError
			if !errors.As(err, &herr) || herr.Status != http.StatusSwitchingProtocols || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Dial returned %v, want a *HandshakeError for HTTP 101 saying %q", err, tt.wantErr)
			}
			if resp == nil || herr.Response != resp {
				t.Error("the error does not carry the response Dial returned")
			}
			// The connection is closed, and nothing was sent on it: a
			// failed client never speaks WebSocket to the server.
			if a := faultAwait(t, afters, "end of the connection"); a.err != nil || a.n != 0 {
				t.Fatalf("after the refused response the client sent %d bytes and %v, want 0 and a close", a.n, a.err)
			}
		})
	}
}
