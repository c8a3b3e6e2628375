package websocket

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// This file holds how a Conn does I/O on its net.Conn: a read buffer that
// is given back while the connection idles, deadlines driven by contexts,
// and locks that give up when a context is done.

// smallReadSize is the read buffer a connection keeps of its own: enough for
// a header and a short message. A read that fills it shows a busy
// connection, which borrows a large pooled buffer until it idles again.
const (
	smallReadSize  = 128
	readBufferSize = 16 << 10
)

// errWouldBlock is readNow's answer when the socket has nothing to read.
var errWouldBlock = errors.New("websocket: nothing to read yet")

var readBuffers = sync.Pool{New: func() any {
	b := make([]byte, readBufferSize)
	return &b
}}

// chunkSize is the size of the pooled chunks that a large frame is staged
// in for writing (stage.go) and that Read gathers a large message in
// (readwhole.go). Go gives objects this large whole pages of their own.
const chunkSize = 64 << 10

type chunk = [chunkSize]byte

var chunks = sync.Pool{New: func() any { return new(chunk) }}

// readBuffer is a bufio.Reader that can shrink: it reads into a small array
// inside the Conn and borrows a large buffer from a pool only while data
// arrives faster than the small one holds.
type readBuffer struct {
	src     io.Reader
	raw     syscall.RawConn // src's socket, to wait for data holding no buffer; nil if not a socket
	rawRead func(fd uintptr) bool
	rawErr  error
	noWait  bool   // rawRead reports an empty socket instead of waiting
	front   []byte // where rawRead puts what it reads before buf, if anything
	frontN  int    // how much it put there
	buf     []byte // small[:], *big, or nil; the data is buf[r:w]
	r, w    int
	big     *[]byte
	small   *[smallReadSize]byte // only when raw is nil: a socket needs no buffer to wait

	// owner, if set, is told before every read from src, which may wait
	// for the peer, so that it sends what it held back (coalesce.go).
	owner *Conn
}

func (b *readBuffer) waiting() {
	if b.owner != nil {
		b.owner.sendBeforeWait()
	}
}

// init starts the buffer with bytes already read from src.
func (b *readBuffer) init(src io.Reader, buffered []byte) {
	b.src = src
	b.raw = nil
	// Only a socket itself, not a wrapper that might change what is read
	// or written: the raw socket bypasses its methods.
	switch sc := src.(type) {
	case *net.TCPConn, *net.UnixConn:
		if raw, err := sc.(syscall.Conn).SyscallConn(); err == nil && canReadWhenReady {
			b.raw = raw
		}
	}
	b.buf = nil
	if b.raw == nil {
		b.small = new([smallReadSize]byte)
		b.buf = b.small[:]
	}
	if len(buffered) > len(b.buf) {
		b.borrow()
	}
	b.w = copy(b.buf, buffered)
}

func (b *readBuffer) buffered() int { return b.w - b.r }
func (b *readBuffer) peek() []byte  { return b.buf[b.r:b.w] }
func (b *readBuffer) skip(n int)    { b.r += n }

// borrow moves the buffered data into a large pooled buffer.
func (b *readBuffer) borrow() {
	if b.big != nil {
		return
	}
	b.big = readBuffers.Get().(*[]byte)
	n := copy(*b.big, b.buf[b.r:b.w])
	b.buf, b.r, b.w = *b.big, 0, n
}

// release gives the large buffer back to the pool if nothing is buffered.
func (b *readBuffer) release() {
	if b.r != b.w {
		return
	}
	b.r, b.w = 0, 0
	if b.big != nil {
		readBuffers.Put(b.big)
		b.big = nil
		b.buf = nil
		if b.small != nil {
			b.buf = b.small[:]
		}
	}
}

// fill reads until at least n bytes are buffered; n must not exceed
// smallReadSize. Bytes read before an error stay buffered, so a fill cut
// short by a deadline can be resumed.
func (b *readBuffer) fill(n int) error {
	for b.w-b.r < n {
		if b.r > 0 && len(b.buf)-b.r < n {
			b.w = copy(b.buf, b.buf[b.r:b.w])
			b.r = 0
		}
		b.waiting()
		if b.r == b.w && b.big == nil && b.raw != nil {
			if err := b.readWhenReady(); err != nil {
				return err
			}
			continue
		}
		room := len(b.buf) - b.w
		m, err := b.src.Read(b.buf[b.w:])
		b.w += m
		if m == room && b.big == nil {
			b.borrow()
		}
		if err != nil {
			if b.w-b.r >= n {
				return nil
			}
			return err
		}
	}
	return nil
}

// read reads up to len(p) bytes into p, all of them from one frame whose
// unread payload is frameLeft bytes. A read as large as the buffer goes
// straight into p.
func (b *readBuffer) read(p []byte, frameLeft int64) (int, error) {
	if b.r < b.w {
		n := copy(p, b.buf[b.r:b.w])
		b.r += n
		return n, nil
	}
	b.waiting()
	if len(p) >= len(b.buf) && (b.buf != nil || int64(len(p)) >= frameLeft) {
		// Buffering would only add a copy.
		if b.raw != nil && int64(len(p)) == frameLeft {
			// What follows the frame, if it has come, need not wait
			// for a read of its own.
			return b.readFrameEnd(p)
		}
		return b.src.Read(p)
	}
	if frameLeft > int64(len(b.buf)) {
		b.borrow()
	}
	b.r, b.w = 0, 0
	m, err := b.src.Read(b.buf)
	b.w = m
	n := copy(p, b.buf[:m])
	b.r = n
	if n > 0 {
		err = nil
	}
	return n, err
}

// discardAll reads and drops everything until src fails (at EOF, or at the
// deadline the caller set).
func (b *readBuffer) discardAll() {
	b.r, b.w = 0, 0
	b.borrow()
	defer b.drop()
	for {
		if _, err := b.src.Read(b.buf); err != nil {
			return
		}
	}
}

// drop forgets what is buffered and gives the large buffer back, for a
// reader that will read no more.
func (b *readBuffer) drop() {
	b.r, b.w = 0, 0
	b.release()
}

// A deadline is kept in a word as nanoseconds since clockBase, by
// monoNanos; 0 means none. clockBase has a monotonic clock reading, and so
// has every time monoTime makes from such a word: a deadline follows the
// monotonic clock, as the net.Conn's own do, and a wall clock stepped
// meanwhile does not move it.
var clockBase = time.Now()

// monoNanos returns t as nanoseconds since clockBase, or 0 for the zero
// time. A time without a monotonic reading (from time.Unix, say) is placed
// by the wall clock as it is now, as net.Conn.SetDeadline places it.
func monoNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	var ns time.Duration
	if t != t.Round(0) { // it has a monotonic reading
		ns = t.Sub(clockBase)
	} else {
		now := time.Now()
		ns = t.Sub(now) // saturates, far from the present
		if up := now.Sub(clockBase); ns <= math.MaxInt64-up {
			ns += up
		}
	}
	if ns == 0 {
		return -1 // clockBase itself, long past
	}
	return int64(ns)
}

// monoTime returns the time that monoNanos returned ns for. Its wall-clock
// reading is taken from the wall clock as it is now, for a net.Conn that
// goes by that.
func monoTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	now := time.Now()
	d := time.Duration(ns) - now.Sub(clockBase)
	if d > time.Duration(ns) {
		d = math.MinInt64 // wrapped around, far in the past
	}
	return now.Add(d)
}

// covers reports whether the deadline a, applied to the net.Conn, can stand
// for the deadline t: both are none, or a is at most a microsecond later.
// The same time without a monotonic reading converts a few nanoseconds
// apart each time (monoNanos reads two clocks), and resetting the
// net.Conn's deadline for that would cost most operations under such a
// context a timer update. Never earlier: the net.Conn must not time out
// before t.
func covers(a, t int64) bool {
	if a == t {
		return true
	}
	if a == 0 || t == 0 || (a < 0) != (t < 0) {
		return false
	}
	return a > t && a-t < int64(time.Microsecond)
}

// monoNow returns the time now as monoNanos does.
func monoNow() int64 { return int64(time.Since(clockBase)) }

// aLongTimeAgo is a deadline in the past, which unblocks I/O at once.
var (
	aLongTimeAgo      = time.Unix(1, 0)
	aLongTimeAgoNanos = monoNanos(aLongTimeAgo)
)

// deadline combines a deadline the caller set on the Conn with the contexts
// of individual operations, for one direction of the net.Conn. An operation
// calls begin before its I/O and end after it.
//
// A context that is cancelled must unblock the I/O, which takes a
// [context.AfterFunc]. Registering one per operation would cost an
// allocation and a lock on the parent context every time, so the
// registration is kept for as long as operations come with contexts that
// share a Done channel (the same context, or values derived from it, as a
// handler's read loop has), and only armed and disarmed per operation.
type deadline struct {
	nc    net.Conn
	write bool // the deadline is nc's write deadline, not its read deadline

	// (The small fields are kept together: a Conn has two deadlines,
	// and padding between them would cost it 32 bytes.)
	mu      sync.Mutex
	armed   bool         // an operation is under way
	closed  bool         // release was called: register nothing more
	user    atomic.Int64 // from SetReadDeadline or SetWriteDeadline, as monoNanos; written under mu
	applied int64        // what the net.Conn has now, as monoNanos

	done  <-chan struct{} // the Done channel watched, or nil
	stop  func() bool     // stops watching it
	watch uint64          // counts registrations, so a stale one finds out
}

// init makes d the read or write deadline of nc. (Two method values would
// be two allocations per connection.)
func (d *deadline) init(nc net.Conn, write bool) { d.nc, d.write = nc, write }

func (d *deadline) set(t time.Time) error {
	if d.write {
		return d.nc.SetWriteDeadline(t)
	}
	return d.nc.SetReadDeadline(t)
}

func (d *deadline) setUser(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.user.Store(monoNanos(t))
	d.applied = d.user.Load()
	return d.set(t)
}

// begin applies the earlier of the caller's deadline and ctx's, and makes
// sure a cancelled ctx unblocks the I/O by moving the deadline into the
// past, as net/http and crypto/tls do. The net.Conn deadline is only touched
// when it changes, so steady-state I/O costs a lock and no allocation.
func (d *deadline) begin(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.user.Load()
	if dl, ok := ctx.Deadline(); ok {
		if ns := monoNanos(dl); t == 0 || ns < t {
			t = ns
		}
	}
	if ctx.Err() != nil {
		t = aLongTimeAgoNanos
	}
	if !covers(d.applied, t) {
		_ = d.set(monoTime(t))
		d.applied = t
	}
	d.armed = true
	if done := ctx.Done(); done != d.done {
		// A new context: a cancellation of the one watched so far,
		// even one that is firing now, no longer concerns us.
		if d.stop != nil {
			d.stop()
			d.stop = nil
		}
		d.done = done
		d.watch++
		if done != nil && !d.closed {
			watch := d.watch
			d.stop = context.AfterFunc(ctx, func() { d.cancelled(watch) })
		}
	}
}

// cancelled moves the deadline into the past when the context of
// registration watch is done while an operation under it is under way.
// An operation that begins later sees the context done itself.
func (d *deadline) cancelled(watch uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.armed && d.watch == watch {
		_ = d.set(aLongTimeAgo)
		d.applied = aLongTimeAgoNanos
	}
}

// expired returns the error an operation under ctx gets at once because
// ctx or the caller's deadline has ended, or nil; for work that does not
// reach the net.Conn, where the deadline would otherwise say so.
func (d *deadline) expired(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dl, ok := ctx.Deadline()
	ns := d.user.Load()
	if !ok && ns == 0 {
		return nil
	}
	now := time.Now()
	if ok && !now.Before(dl) {
		return context.DeadlineExceeded
	}
	if ns != 0 && int64(now.Sub(clockBase)) >= ns {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// beginUser applies the caller's deadline alone, for I/O that no
// operation's context bounds.
func (d *deadline) beginUser() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t := d.user.Load(); t != d.applied {
		_ = d.set(monoTime(t))
		d.applied = t
	}
}

// end disarms what begin set up. A cancellation that comes after end does
// not touch the net.Conn.
func (d *deadline) end() {
	d.mu.Lock()
	d.armed = false
	d.mu.Unlock()
}

// release stops watching a context, so that a long-lived context does not
// keep a closed connection in memory.
func (d *deadline) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.stop != nil {
		d.stop()
		d.stop = nil
	}
}

// contextError returns the context's error for an I/O error that the
// context's deadline or cancellation caused, and err itself otherwise. The
// socket deadline taken from a context can fire a moment before the context
// marks itself done, so a passed deadline counts too.
func contextError(ctx context.Context, err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return err
}

// isTimeout reports whether err means that a deadline or context ended an
// operation, rather than that the connection failed.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// chanLock is a mutex whose lock gives up when a context is done.
type chanLock chan struct{}

func newChanLock() chanLock { return make(chanLock, 1) }

// lock takes the lock, or fails when ctx is done or closed is closed
// (closed may be nil).
func (l chanLock) lock(ctx context.Context, closed <-chan struct{}) error {
	select {
	case l <- struct{}{}:
		return nil
	default:
	}
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
		return net.ErrClosed
	}
}

func (l chanLock) tryLock() bool {
	select {
	case l <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l chanLock) unlock() { <-l }

func leUint32(b [4]byte) uint32      { return binary.LittleEndian.Uint32(b[:]) }
func beUint64(b []byte) uint64       { return binary.BigEndian.Uint64(b) }
func putBeUint64(b []byte, v uint64) { binary.BigEndian.PutUint64(b, v) }
