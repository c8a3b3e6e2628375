package interop

import _ "embed"

// BrowserPage is the page TestInteropBrowser serves to Chromium: it drives
// the server's /ws/echo and /ws/server-close endpoints from JavaScript and
// POSTs its verdict to /result. See the comment at its top.
//
//go:embed browser.html
var BrowserPage string

// The close codes and reasons the page expects and sends.
const (
	BrowserClientCloseCode   = 4000
	BrowserClientCloseReason = "bye from chromium ✓"
	BrowserServerCloseCode   = 4001
	BrowserServerCloseReason = "server bye ✓"
)

// The close code and reason the peer scripts' clients send, and the ones
// their --server-close step asks the server to close with.
const (
	ClientCloseCode   = 4000
	ServerCloseCode   = 4001
	ServerCloseReason = "server bye ✓"
)

// ClientCloseReason is the reason peer k's client closes with.
func ClientCloseReason(k Kind) string { return "bye from " + string(k) }
