package websocket

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// deadlineRecorder is a net.Conn that remembers the read deadlines set on it.
type deadlineRecorder struct {
	net.Conn
	set []time.Time
}

func (r *deadlineRecorder) SetReadDeadline(t time.Time) error {
	r.set = append(r.set, t)
	return nil
}

// The net.Conn gets a context's deadline with its monotonic clock reading.
// Given only the wall-clock time, it times out early when the wall clock is
// stepped forward between the context's creation and the read: the read
// then fails with a bare os.ErrDeadlineExceeded while the context is not
// yet done, where context.DeadlineExceeded is due. (TestSoak failed so,
// once, on a freshly booted CI machine.)
func TestContextDeadlineKeepsTheMonotonicClock(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	rec := &deadlineRecorder{Conn: a}
	var d deadline
	d.init(rec, false)

	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	d.begin(ctx)
	d.end()
	d.release()
	dl, _ := ctx.Deadline()
	if len(rec.set) != 1 {
		t.Fatalf("%d deadlines set, want 1", len(rec.set))
	}
	got := rec.set[0]
	if !got.Equal(dl) || !strings.Contains(got.String(), " m=") {
		t.Errorf("net.Conn's deadline %v, want the context's %v with its monotonic reading", got, dl)
	}

	// The caller's own deadline, when earlier, is the one applied.
	user := time.Now().Add(time.Minute)
	if err := d.setUser(user); err != nil {
		t.Fatal(err)
	}
	d.begin(ctx)
	d.end()
	if got := rec.set[len(rec.set)-1]; !got.Equal(user) {
		t.Errorf("net.Conn's deadline %v, want the caller's %v", got, user)
	}
}
