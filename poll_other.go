//go:build !linux

package websocket

// Without a poller, an awaiting application is called at once and its read
// waits as usual (see await.go).

type pollHandle struct{}

func (*pollHandle) watch(*Conn) bool { return false }
func (*pollHandle) forget()          {}
