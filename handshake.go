package websocket

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"
)

// acceptGUID is the fixed GUID that RFC 6455 §1.3 appends to the client's key.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey returns the Sec-WebSocket-Accept value that answers the
// Sec-WebSocket-Key challengeKey: the base64 of the SHA-1 of the key and the
// fixed GUID (RFC 6455 §4.2.2).
func AcceptKey(challengeKey string) string {
	var b [acceptKeyLen]byte
	return string(appendAcceptKey(b[:0], challengeKey))
}

// acceptKeyLen is the length of an accept key: the base64 of a SHA-1 sum.
const acceptKeyLen = (sha1.Size + 2) / 3 * 4

// appendAcceptKey appends [AcceptKey] of challengeKey to dst. It does the
// work on the stack: the 101 response is built without allocating.
func appendAcceptKey(dst []byte, challengeKey string) []byte {
	var in [64]byte // a valid key (24 bytes) and the GUID fit
	sum := sha1.Sum(append(append(in[:0], challengeKey...), acceptGUID...))
	var out [acceptKeyLen]byte
	base64.StdEncoding.Encode(out[:], sum[:])
	return append(dst, out[:]...)
}

// newChallengeKey returns a fresh Sec-WebSocket-Key: 16 random bytes in
// base64 (§4.1).
func newChallengeKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// The request headers Accept reads, spelled as net/http stores them
// ([http.CanonicalHeaderKey]): looked up in another spelling, each would
// be canonicalised into a new string on every request.
const (
	hdrKey      = "Sec-Websocket-Key"
	hdrVersion  = "Sec-Websocket-Version"
	hdrProtocol = "Sec-Websocket-Protocol"
)

// headerValue is [http.Header.Get] for a name already in canonical form.
func headerValue(h http.Header, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// validChallengeKey reports whether key is base64 of exactly 16 bytes.
func validChallengeKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	var b [18]byte
	n, err := base64.StdEncoding.Decode(b[:], []byte(key))
	return err == nil && n == 16
}

// headerTokens calls f for each comma-separated token in the values of
// header name, with optional whitespace trimmed, until f returns false.
func headerTokens(h http.Header, name string, f func(token string) bool) {
	for _, v := range h.Values(name) {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if tok = strings.Trim(tok, " \t"); tok != "" && !f(tok) {
				return
			}
		}
	}
}

// hasToken reports whether header name lists token, compared
// case-insensitively as §4.2.1 asks for Upgrade and Connection.
func hasToken(h http.Header, name, token string) bool {
	found := false
	headerTokens(h, name, func(t string) bool {
		found = strings.EqualFold(t, token)
		return !found
	})
	return found
}

// HandshakeError reports a failed opening handshake: on a server, a request
// [Accept] refused (it has answered with Status); on a client, a response
// [Dial] could not accept.
type HandshakeError struct {
	// Status is the HTTP status: the one Accept answered with, or the one
	// the server answered Dial with (0 if the response never came).
	Status int
	// Reason says what was wrong.
	Reason string
	// Response is the server's response to Dial, with up to 64 KiB of its
	// body readable; nil on a server.
	Response *http.Response
}

func (e *HandshakeError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("websocket: handshake failed (HTTP %d): %s", e.Status, e.Reason)
	}
	return "websocket: handshake failed: " + e.Reason
}

// AcceptOptions configures [Accept]. The zero value (or nil) accepts
// same-origin requests, without subprotocol or compression.
type AcceptOptions struct {
	// Subprotocols lists the subprotocols the server speaks, most
	// preferred first. The first one the client also offers is chosen;
	// if none is, the handshake goes ahead without one, and the handler
	// can check [Conn.Subprotocol].
	Subprotocols []string

	// OriginPatterns lists the hosts, besides the request's own Host, that
	// browser pages may connect from. A pattern is matched against the
	// host (with port, if any) of the request's Origin header using
	// [path.Match], so "*.example.com" and "localhost:*" work. Requests
	// without Origin (non-browser clients) are always allowed.
	//
	// The check protects against cross-site WebSocket hijacking: without
	// it any web page could open a WebSocket to the server with the
	// visitor's cookies.
	OriginPatterns []string

	// InsecureSkipOriginCheck turns the origin check off. Only do this
	// when the connection carries nothing that a browser's cookies or
	// credentials would grant.
	InsecureSkipOriginCheck bool

	// Compression enables permessage-deflate (RFC 7692) when the client
	// offers it. Nil disables it.
	Compression *CompressionOptions
}

// Accept upgrades an HTTP request to a WebSocket connection (RFC 6455 §4.2).
// It checks the request, answers 101 Switching Protocols and takes over the
// connection from net/http; bytes the client sent behind the request are
// kept. The handler must not use w afterwards.
//
// On a request it refuses Accept answers with an HTTP error whose body says
// what was wrong: 405 for a method other than GET, 426 for a missing Upgrade
// header or an unsupported WebSocket version, 403 for a cross-origin request
// that [AcceptOptions.OriginPatterns] does not allow, 400 otherwise. It then
// returns a *[HandshakeError].
//
// Headers the handler set on w before calling Accept (cookies, say) are sent
// with the 101 response. Use the request's context or your own to bound the
// connection's life; Accept clears the deadlines net/http set on it.
//
// Over HTTP/1.1 the connection no longer depends on the handler: the handler
// may return and leave the Conn to another goroutine, which lets net/http
// free the request, the response and their buffers (about 11 KiB per
// connection). The request's context ends when the handler returns, so that
// goroutine needs a context of its own.
//
// Over HTTP/2, Accept serves the extended CONNECT requests of RFC 8441 on
// the same handler: it answers 200 and runs the WebSocket on the request's
// stream. Such a connection lives inside the handler, since net/http ends
// the stream when the handler returns: keep the handler running while the
// Conn is in use (a Conn used after that reports [net.ErrClosed]). See "HTTP/2"
// in the package documentation for how to turn it on.
func Accept(w http.ResponseWriter, r *http.Request, opts *AcceptOptions) (*Conn, error) {
	if opts == nil {
		opts = &AcceptOptions{}
	}
	overHTTP2 := isExtendedConnect(r)
	check := checkUpgradeRequest
	if overHTTP2 {
		check = checkConnectRequest
	}
	if herr := check(r); herr != nil {
		return nil, refuse(w, herr)
	}
	if !opts.InsecureSkipOriginCheck {
		if herr := checkOrigin(r, opts.OriginPatterns); herr != nil {
			return nil, refuse(w, herr)
		}
	}
	subprotocol := selectSubprotocol(r.Header, opts.Subprotocols)
	ext, extHeader := acceptExtensions(r.Header, opts.Compression)
	if overHTTP2 {
		return acceptStream(w, r, subprotocol, ext, extHeader)
	}

	nc, buffered, resp, err := takeOver(w)
	if errors.Is(err, errHandlerReturned) {
		return nil, err // w is no longer there to answer on
	}
	if err != nil {
		return nil, refuse(w, &HandshakeError{Status: http.StatusInternalServerError,
			Reason: "cannot take over the connection: " + err.Error()})
	}
	resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	resp = appendAcceptKey(resp, headerValue(r.Header, hdrKey))
	resp = append(resp, "\r\n"...)
	if subprotocol != "" {
		resp = appendHeader(resp, "Sec-WebSocket-Protocol", subprotocol)
	}
	if extHeader != "" {
		resp = appendHeader(resp, "Sec-WebSocket-Extensions", extHeader)
	}
	resp = appendHeaderFields(resp, w.Header(), handshakeField)
	resp = append(resp, "\r\n"...)
	if _, err := nc.Write(resp); err != nil {
		nc.Close()
		return nil, fmt.Errorf("websocket: writing the handshake response: %w", err)
	}
	// This clears the write deadline above and any that net/http may have
	// set from its ReadTimeout and WriteTimeout: they are not meant for a
	// long-lived connection.
	_ = nc.SetDeadline(time.Time{})
	return newConn(nc, true, buffered, subprotocol, ext), nil
}

// takeOver takes the connection from the server that read the request:
// from [Serve] directly, from net/http by hijacking it. It returns the bytes
// the client sent behind the request, which the caller must copy, and an
// empty buffer to build the response in. The connection has a write
// deadline for the response: Serve's since the connection arrived, or
// [handshakeWriteTimeout].
func takeOver(w http.ResponseWriter) (nc net.Conn, buffered, resp []byte, err error) {
	if sw, ok := w.(*serveResponse); ok {
		return sw.takeOver()
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, nil, err
	}
	_ = nc.SetWriteDeadline(time.Now().Add(handshakeWriteTimeout))
	if n := brw.Reader.Buffered(); n > 0 {
		buffered, _ = brw.Reader.Peek(n)
	}
	// The response is built in the hijacked writer's buffer, which
	// net/http has given up: the 101 costs no allocation of its own.
	if brw.Writer != nil {
		resp = brw.Writer.AvailableBuffer()
	}
	return nc, buffered, resp, nil
}

// handshakeWriteTimeout bounds writing the 101 response, so that a client
// that does not read cannot hold a handler forever.
const handshakeWriteTimeout = 10 * time.Second

// appendHeader appends a header line, with the value sanitised: a CR or LF
// in it becomes a space, so that it cannot split the response, and invalid
// UTF-8 becomes U+FFFD.
func appendHeader(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	if strings.ContainsAny(value, "\r\n") || !utf8.ValidString(value) {
		for _, r := range value {
			if r == '\r' || r == '\n' {
				r = ' '
			}
			dst = utf8.AppendRune(dst, r)
		}
	} else {
		dst = append(dst, value...)
	}
	return append(dst, "\r\n"...)
}

// appendHeaderFields appends the fields a handler set on a response. It
// leaves out names that are not HTTP tokens, which could end the header or
// forge another field, the fields that say how the connection goes on and
// how the body is framed, which are the server's to write, and those for
// which skip, if not nil, reports true.
func appendHeaderFields(dst []byte, h http.Header, skip func(name string) bool) []byte {
	for k, vs := range h {
		if strings.EqualFold(k, "Connection") || strings.EqualFold(k, "Transfer-Encoding") || !validToken(k) {
			continue
		}
		if skip != nil && skip(k) {
			continue
		}
		for _, v := range vs {
			dst = appendHeader(dst, k, v)
		}
	}
	return dst
}

// handshakeField reports whether a field a handler set is one a 101
// response must not take from it: Upgrade and the Sec-WebSocket- fields,
// which the handshake writes itself and §11.3 allows once (a subprotocol
// field when none was chosen is not allowed at all, §4.2.2), and
// Content-Length, which no 1xx response has (RFC 9110 §8.6).
func handshakeField(name string) bool {
	const prefix = "Sec-WebSocket-"
	return strings.EqualFold(name, "Upgrade") || strings.EqualFold(name, "Content-Length") ||
		len(name) >= len(prefix) && strings.EqualFold(name[:len(prefix)], prefix)
}

// validToken reports whether s is a token (RFC 9110 §5.6.2).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || !isTokenByte[c] {
			return false
		}
	}
	return true
}

var isTokenByte = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// refuse answers a refused handshake with herr's status and reason.
func refuse(w http.ResponseWriter, herr *HandshakeError) error {
	refusalHeaders(w.Header(), herr.Status)
	http.Error(w, herr.Error(), herr.Status)
	return herr
}

// refusalHeaders sets the header fields that go with a refusal's status:
// what to upgrade to, or which method to use.
func refusalHeaders(h http.Header, status int) {
	switch status {
	case http.StatusUpgradeRequired:
		h.Set("Upgrade", "websocket")
		h.Set("Sec-WebSocket-Version", "13")
	case http.StatusMethodNotAllowed:
		h.Set("Allow", http.MethodGet)
	}
}

// checkUpgradeRequest applies RFC 6455 §4.2.1 to an opening handshake.
func checkUpgradeRequest(r *http.Request) *HandshakeError {
	bad := func(status int, format string, args ...any) *HandshakeError {
		return &HandshakeError{Status: status, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case !r.ProtoAtLeast(1, 1):
		return bad(http.StatusBadRequest, "WebSocket needs HTTP/1.1 or later, the request is %s", r.Proto)
	case r.Method != http.MethodGet:
		return bad(http.StatusMethodNotAllowed, "WebSocket handshake must be a GET request, not %s", r.Method)
	case !hasToken(r.Header, "Upgrade", "websocket"):
		return bad(http.StatusUpgradeRequired, "this endpoint speaks WebSocket: the Upgrade header must contain \"websocket\"")
	case !hasToken(r.Header, "Connection", "upgrade"):
		return bad(http.StatusBadRequest, "the Connection header must contain \"upgrade\", it is %q", r.Header.Get("Connection"))
	case r.ContentLength != 0 || len(r.TransferEncoding) > 0:
		// What follows the request would be its body, not frames.
		return bad(http.StatusBadRequest, "an upgrade request must not have a body")
	}
	if herr := checkVersion(r); herr != nil {
		return herr
	}
	if k := r.Header[hdrKey]; len(k) != 1 || !validChallengeKey(k[0]) {
		return bad(http.StatusBadRequest, "Sec-WebSocket-Key must be the base64 of 16 bytes, it is %q", strings.Join(k, ", "))
	}
	return nil
}

// checkVersion requires the protocol version this package speaks (§4.4).
func checkVersion(r *http.Request) *HandshakeError {
	if v := r.Header[hdrVersion]; len(v) != 1 || strings.TrimSpace(v[0]) != "13" {
		return &HandshakeError{Status: http.StatusUpgradeRequired, Reason: fmt.Sprintf(
			"unsupported Sec-WebSocket-Version %q; this server speaks version 13", strings.Join(v, ", "))}
	}
	return nil
}

// checkOrigin applies the same-origin policy to a browser's request: the
// Origin header's host must be the request's Host or match one of patterns.
func checkOrigin(r *http.Request, patterns []string) *HandshakeError {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	host, ok := originHost(origin)
	if !ok {
		return &HandshakeError{Status: http.StatusForbidden,
			Reason: fmt.Sprintf("Origin %q is not a URL with a host", origin)}
	}
	if strings.EqualFold(host, r.Host) {
		return nil
	}
	host = strings.ToLower(host)
	for _, p := range patterns {
		ok, err := path.Match(strings.ToLower(p), host)
		if err != nil {
			return &HandshakeError{Status: http.StatusInternalServerError,
				Reason: fmt.Sprintf("origin pattern %q is malformed: %v", p, err)}
		}
		if ok {
			return nil
		}
	}
	return &HandshakeError{Status: http.StatusForbidden, Reason: fmt.Sprintf(
		"a page from %q may not open a WebSocket to %q (cross-origin request; the server can allow it in AcceptOptions.OriginPatterns)",
		origin, r.Host)}
}

// originHost returns the host, with the port if any, of the URL origin, as
// [url.Parse] finds it; ok is false if there is none.
func originHost(origin string) (host string, ok bool) {
	if host, ok := simpleOriginHost(origin); ok {
		return host, true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return "", false
	}
	return u.Host, true
}

// simpleOriginHost parses the form browsers send, scheme://name[:port] with
// a plain host name or IPv4 address, without url.Parse's allocation. It
// answers only when url.Parse would find the same host and no error;
// anything else (IPv6, user info, a path, escapes) is left to url.Parse.
func simpleOriginHost(origin string) (string, bool) {
	scheme, host, ok := strings.Cut(origin, "://")
	if !ok || scheme == "" || host == "" {
		return "", false
	}
	for i := 0; i < len(scheme); i++ {
		c := scheme[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return "", false
		}
	}
	name, port, hasPort := strings.Cut(host, ":")
	if name == "" || hasPort && port == "" {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return "", false
		}
	}
	for i := 0; i < len(port); i++ {
		if c := port[i]; c < '0' || c > '9' {
			return "", false
		}
	}
	return host, true
}

// selectSubprotocol returns the first of the server's subprotocols that the
// client offers, or "".
func selectSubprotocol(h http.Header, server []string) string {
	for _, s := range server {
		if hasTokenExact(h, hdrProtocol, s) {
			return s
		}
	}
	return ""
}

// hasTokenExact is hasToken with a case-sensitive comparison: subprotocol
// names are case-sensitive (§4.1).
func hasTokenExact(h http.Header, name, token string) bool {
	found := false
	headerTokens(h, name, func(t string) bool {
		found = t == token
		return !found
	})
	return found
}

// hostPort returns u's host with the port its scheme implies when it has
// none.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "wss" || u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

var errBadScheme = errors.New("websocket: URL scheme must be ws or wss")
