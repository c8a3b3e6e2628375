package websocket

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// This file holds the poller that watches awaited connections (await.go):
// one epoll instance for the process and one goroutine waiting on it, started
// by the first AwaitMessage, that waits in the runtime's poller.
//
// The runtime already watches every socket in its own epoll instance, but
// only for goroutines parked on it. Ours watches the same sockets for
// nobody: each registration is one-shot (EPOLLONESHOT), made or renewed
// each time a connection goes quiet, and reported by waking the Conn.
//
// A socket's descriptor is reused by the kernel as soon as it closes, so an
// event cannot name a Conn by descriptor alone: each registration carries a
// generation number beside it, and an event whose generation is not the
// one now registered for its descriptor is stale and dropped. Descriptors
// are only used under the Conn's await lock, which teardown takes before it
// closes the socket.

// poller is the process's epoll instance and the connections it watches.
type poller struct {
	epfd int
	file *os.File // epfd, kept from the finalizer that would close it

	mu    sync.Mutex
	conns []pollSlot // by descriptor
	gen   uint32     // the last generation handed out
}

// pollSlot is the registration of one descriptor.
type pollSlot struct {
	c   *Conn
	gen uint32
}

// pollHandle is a Conn's registration with the poller.
type pollHandle struct {
	fd  int32 // the socket's descriptor, once registered
	gen uint32
	// registered says that fd is in the epoll set (possibly disarmed
	// after an event), so it is renewed rather than added.
	registered bool
	failed     bool // the socket cannot be watched; don't try again

	arm func(fd uintptr) // armFD for the socket, for RawConn.Control
	err error            // arm's result
}

var (
	pollerOnce   sync.Once
	globalPoller *poller // nil if epoll is unavailable
)

func getPoller() *poller {
	pollerOnce.Do(func() {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		// The goroutine waits for the epoll instance itself to turn
		// readable in the runtime's poller, like any socket, rather than
		// in epoll_wait: a goroutine blocked in a system call holds on to
		// its thread's P until the runtime notices, which with few CPUs
		// stalls everything else.
		if err := syscall.SetNonblock(fd, true); err != nil {
			syscall.Close(fd)
			return
		}
		f := os.NewFile(uintptr(fd), "websocket-poller")
		raw, err := f.SyscallConn()
		if err != nil {
			f.Close()
			return
		}
		globalPoller = &poller{epfd: fd, file: f}
		go globalPoller.run(raw)
	})
	return globalPoller
}

// watchEvents are what the poller waits for: input, or the peer's end of
// the connection, or an error; once.
const watchEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// watch arms a one-shot watch on c's socket and reports whether it did. The
// caller holds c's await lock and has checked that c is not closing.
func (h *pollHandle) watch(c *Conn) bool {
	if h.failed || c.in.raw == nil {
		return false
	}
	if getPoller() == nil {
		h.failed = true
		return false
	}
	if h.arm == nil {
		// Made once: a closure made per call would be allocated per
		// call.
		h.arm = func(fd uintptr) { h.err = h.armFD(c, int(fd)) }
	}
	// Through Control, which keeps the descriptor open meanwhile: even a
	// socket closed behind the Conn's back cannot have its number reused
	// for another connection's socket while we renew the watch.
	if err := c.in.raw.Control(h.arm); err != nil || h.err != nil {
		h.forget()
		h.failed = true
		h.err = nil
		return false
	}
	return true
}

// armFD adds descriptor fd to the epoll set, or renews its watch.
func (h *pollHandle) armFD(c *Conn, fd int) error {
	p := globalPoller
	op := syscall.EPOLL_CTL_MOD
	if !h.registered {
		op = syscall.EPOLL_CTL_ADD
		h.fd = int32(fd)
		h.gen = p.add(c, fd)
		h.registered = true
	}
	ev := syscall.EpollEvent{Events: uint32(watchEvents), Fd: h.fd, Pad: int32(h.gen)}
	err := syscall.EpollCtl(p.epfd, op, fd, &ev)
	if err == syscall.EEXIST {
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, fd, &ev)
	}
	return err
}

// forget drops the registration before the socket closes (closing takes it
// out of the epoll set). The caller holds the Conn's await lock.
func (h *pollHandle) forget() {
	if h.registered {
		globalPoller.remove(int(h.fd), h.gen)
		h.registered = false
	}
}

// add records c as the owner of descriptor fd and returns its generation.
func (p *poller) add(c *Conn, fd int) uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fd >= len(p.conns) {
		p.conns = append(p.conns, make([]pollSlot, fd+1-len(p.conns))...)
	}
	p.gen++
	p.conns[fd] = pollSlot{c, p.gen}
	return p.gen
}

// remove forgets descriptor fd's registration gen, so that the Conn can be
// collected.
func (p *poller) remove(fd int, gen uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fd < len(p.conns) && p.conns[fd].gen == gen {
		p.conns[fd] = pollSlot{}
	}
}

// lookup returns the Conn registered on fd with generation gen, or nil.
func (p *poller) lookup(fd int, gen uint32) *Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fd >= 0 && fd < len(p.conns) && p.conns[fd].gen == gen {
		return p.conns[fd].c
	}
	return nil
}

// run waits for events for as long as the process lives, and wakes the
// Conns they are for.
func (p *poller) run(raw syscall.RawConn) {
	events := make([]syscall.EpollEvent, 256)
	drain := func(uintptr) bool {
		for {
			n, err := syscall.EpollWait(p.epfd, events, 0)
			if err == syscall.EINTR {
				continue
			}
			if n <= 0 {
				return false // nothing more: wait for the runtime's poller
			}
			for _, ev := range events[:n] {
				if c := p.lookup(int(ev.Fd), uint32(ev.Pad)); c != nil {
					c.wake(c.await.Load())
				}
			}
		}
	}
	for {
		if err := raw.Read(drain); err != nil {
			// Not expected: the file is never closed. Do not spin.
			time.Sleep(10 * time.Millisecond)
		}
	}
}
