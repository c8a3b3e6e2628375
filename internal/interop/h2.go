package interop

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"
)

// Peers for WebSockets over HTTP/2 (RFC 8441 extended CONNECT).

// BrowserH2Page is the page TestHTTP2Browser serves to Chromium over HTTP/2:
// it drives /ws/h2/echo, /ws/h2/server-close and /ws/h2/drop, POSTs its
// verdict to /result-h2 and then loads /page. See the comment at its top.
//
//go:embed browser_h2.html
var BrowserH2Page string

// The close the H2 page expects from /ws/h2/server-close.
const (
	BrowserH2ServerCloseCode   = 1000
	BrowserH2ServerCloseReason = "server done ✓"
)

// StartNodeH2Client starts node_h2_peer.js, a WebSocket client over HTTP/2
// on Node's http2 module, against the https:// URL of a server with the
// echo endpoint it expects, with the given flags (--insecure, --idle MS,
// --max-size N, --subprotocol P). The script's own timeout bounds it to
// timeout. Wait for its "result" line.
func StartNodeH2Client(t TB, url string, timeout time.Duration, flags ...string) *Process {
	t.Helper()
	Require(t, Node)
	dir, err := Dir()
	if err != nil {
		t.Fatalf("%v", err)
	}
	args := append([]string{"node", filepath.Join(dir, "node_h2_peer.js"),
		"--url", url, "--timeout", fmt.Sprint(int(timeout.Seconds()))}, flags...)
	p := Start(t, "node h2 client", Options{Args: args, Parse: true, Grace: 3 * time.Second})
	p.kind = Node
	return p
}

// H2Closed is node_h2_peer.js's "closed" line: how the closing handshake of
// one of its WebSockets went.
type H2Closed struct {
	Name      string `json:"name"`
	Initiator string `json:"initiator"` // "client" or "server"
	// Code and Reason are from the server's Close frame; 1005 when it had
	// no code.
	Code   int    `json:"code"`
	Reason string `json:"reason"`
	// CloseFrames counts the server's Close frames on the stream, and
	// FramesAfterClose the frames that followed the first.
	CloseFrames      int `json:"closeFrames"`
	FramesAfterClose int `json:"framesAfterClose"`
	// StreamEnded is whether the server ended the stream (END_STREAM)
	// within 5 s of the close handshake.
	StreamEnded bool `json:"streamEnded"`
	// RSTCode is the stream's RST_STREAM error code, 0 for none or
	// NO_ERROR.
	RSTCode int `json:"rstCode"`
	// CloseFrameMS, EndMS and MS are the milliseconds from the start of
	// the closing handshake (sending our Close frame, or asking the
	// server to close) to the server's Close frame, to the end of the
	// stream, and to the end of the check.
	CloseFrameMS int `json:"closeFrameMs"`
	EndMS        int `json:"endMs"`
	MS           int `json:"ms"`
}

// ParseH2Closed decodes a "closed" line.
func ParseH2Closed(e Event) (H2Closed, error) {
	var c H2Closed
	if e.Event != "closed" {
		return c, fmt.Errorf("not a closed line: %s", e.Line)
	}
	err := json.Unmarshal([]byte(e.Line), &c)
	return c, err
}
