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

// recordedReadDeadline returns a read deadline for a net.Conn that records
// the deadlines set on it.
func recordedReadDeadline(t *testing.T) (*deadline, *deadlineRecorder) {
	a, b := net.Pipe()
	rec := &deadlineRecorder{Conn: a}
	d := new(deadline)
	d.init(rec, false)
	t.Cleanup(func() {
		d.release()
		a.Close()
		b.Close()
	})
	return d, rec
}

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
	d, rec := recordedReadDeadline(t)

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

// A context deadline without a monotonic reading (from time.Unix, or made
// with UTC) converts a few nanoseconds apart each time; operations under
// the same such context still leave the net.Conn's deadline alone, as they
// do for one with a monotonic reading.
func TestWallClockDeadlineIsSetOnce(t *testing.T) {
	d, rec := recordedReadDeadline(t)
	for _, dl := range []time.Time{
		time.Now().Add(time.Hour),
		time.Now().Add(time.Hour).UTC(),
	} {
		ctx, cancel := context.WithDeadline(context.Background(), dl)
		before := len(rec.set)
		for i := 0; i < 1000; i++ {
			d.begin(ctx)
			d.end()
		}
		cancel()
		// Each new highest conversion moves the deadline on by a few
		// nanoseconds: a handful in a thousand.
		if n := len(rec.set) - before; n > 50 {
			t.Errorf("deadline %v: set %d times in 1000 operations", dl, n)
		}
		if got := rec.last(); got.Before(dl) || got.Sub(dl) > time.Millisecond {
			t.Errorf("net.Conn's deadline %v, want %v", got, dl)
		}
	}
}

// A time made from a stored deadline reads, on the wall clock, as the time
// stored.
func TestMonoTimeReadsOnTheWallClock(t *testing.T) {
	for _, want := range []time.Time{
		time.Now().Add(time.Minute),
		time.Unix(0, time.Now().Add(-time.Minute).UnixNano()),
		aLongTimeAgo,
	} {
		got := monoTime(monoNanos(want)).Round(0)
		if got.Sub(want).Abs() > time.Millisecond {
			t.Errorf("monoTime(monoNanos(%v)) = %v on the wall clock", want, got)
		}
	}
}
