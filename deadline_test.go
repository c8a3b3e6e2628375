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

func (r *deadlineRecorder) last() time.Time { return r.set[len(r.set)-1] }

// monotonic reports whether t has a monotonic clock reading.
func monotonic(t time.Time) bool { return strings.Contains(t.String(), " m=") }

// Deadlines follow the monotonic clock, as a net.Conn's own do: the
// net.Conn gets a context's deadline, and the caller's own deadline again
// after one, with a monotonic clock reading. Given only the wall-clock
// time, it timed out early when the wall clock was stepped forward between
// the context's creation and the read: the read then failed with a bare
// os.ErrDeadlineExceeded while the context was not yet done, where
// context.DeadlineExceeded was due. (TestSoak failed so, once, on a freshly
// booted CI machine.)
func TestDeadlinesFollowTheMonotonicClock(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	rec := &deadlineRecorder{Conn: a}
	var d deadline
	d.init(rec, false)
	defer d.release()

	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	dl, _ := ctx.Deadline()
	d.begin(ctx)
	d.end()
	if got := rec.last(); !got.Equal(dl) || !monotonic(got) {
		t.Errorf("net.Conn's deadline %v, want the context's %v with its monotonic reading", got, dl)
	}

	// The caller's own deadline, when earlier than the context's, is the
	// one applied; and applied again after a context's shorter one.
	user := time.Now().Add(time.Minute)
	if err := d.setUser(user); err != nil {
		t.Fatal(err)
	}
	d.begin(ctx)
	d.end()
	short, cancelShort := context.WithTimeout(context.Background(), time.Second)
	defer cancelShort()
	d.begin(short)
	d.end()
	d.begin(ctx)
	d.end()
	if got := rec.last(); !got.Equal(user) || !monotonic(got) {
		t.Errorf("net.Conn's deadline %v, want the caller's %v with its monotonic reading", got, user)
	}

	// A deadline without a monotonic reading is placed by the wall clock
	// as it is set, as net.Conn.SetDeadline places it.
	wall := time.Unix(0, time.Now().Add(time.Minute).UnixNano())
	if err := d.setUser(wall); err != nil {
		t.Fatal(err)
	}
	d.begin(short)
	d.end()
	d.begin(ctx)
	d.end()
	if got := rec.last(); got.Sub(wall).Abs() > time.Millisecond || !monotonic(got) {
		t.Errorf("net.Conn's deadline %v, want %v with a monotonic reading", got, wall)
	}
}

// monoNanos keeps far-off deadlines on their side of now.
func TestMonoNanosSaturates(t *testing.T) {
	now := monoNow()
	for _, tc := range []struct {
		t      time.Time
		future bool
	}{
		{time.Unix(1<<62, 0), true},
		{time.Now().Add(1<<63 - 1), true},
		{time.Unix(1, 0), false},
		{time.Unix(-1<<62, 0), false},
		{time.Now().Add(-1 << 63), false},
	} {
		ns := monoNanos(tc.t)
		if ns == 0 || (ns > now) != tc.future {
			t.Errorf("monoNanos(%v) = %d, now %d: want it in the future %v", tc.t, ns, now, tc.future)
		}
	}
	if monoNanos(time.Time{}) != 0 {
		t.Error("the zero time does not mean no deadline")
	}
}
