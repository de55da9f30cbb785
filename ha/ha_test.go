package ha

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// chanNet connects transports by channels, as a switch would.
type chanNet struct {
	mu   sync.Mutex
	ends map[netip.AddrPort]*chanTransport
	cut  bool
	sent int
}

type chanTransport struct {
	net    *chanNet
	self   netip.AddrPort
	in     chan sent
	closed chan struct{}
	once   sync.Once
}

func (c *chanNet) listen(a netip.AddrPort) *chanTransport {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ends == nil {
		c.ends = map[netip.AddrPort]*chanTransport{}
	}
	t := &chanTransport{net: c, self: a, in: make(chan sent, 256), closed: make(chan struct{})}
	c.ends[a] = t
	return t
}

func (t *chanTransport) Send(b []byte, to netip.AddrPort) error {
	t.net.mu.Lock()
	dst, cut := t.net.ends[to], t.net.cut
	t.net.sent++
	t.net.mu.Unlock()
	if cut || dst == nil {
		return nil
	}
	select {
	case dst.in <- sent{from: t.self, to: to, b: append([]byte(nil), b...)}:
	default:
	}
	return nil
}

func (t *chanTransport) Receive(b []byte) (int, netip.AddrPort, error) {
	select {
	case m := <-t.in:
		return copy(b, m.b), m.from, nil
	case <-t.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

func (t *chanTransport) Close() error {
	t.once.Do(func() {
		close(t.closed)
		t.net.mu.Lock()
		delete(t.net.ends, t.self)
		t.net.mu.Unlock()
	})
	return nil
}

// lockedEngine is a fakeEngine safe for the HA goroutine and the test.
type lockedEngine struct {
	mu     sync.Mutex
	states []State
}

func (e *lockedEngine) HAState(s State) {
	e.mu.Lock()
	e.states = append(e.states, s)
	e.mu.Unlock()
}

func (e *lockedEngine) last() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.states) == 0 {
		return 0
	}
	return e.states[len(e.states)-1]
}

// fakeClock is a Clock that moves only when the test advances it. idle receives each time the
// HA goroutine waits for a timer, which it does after every step.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeTimer
	idle    chan struct{}
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
	} else {
		c.waiters = append(c.waiters, fakeTimer{c.now.Add(d), ch})
	}
	c.mu.Unlock()
	c.idle <- struct{}{}
	return ch
}

// advance moves the clock by d, fires the timers due, and waits for the HA goroutine to wait again.
func (c *fakeClock) advance(t *testing.T, d time.Duration) {
	t.Helper()
	c.mu.Lock()
	c.now = c.now.Add(d)
	var keep []fakeTimer
	fired := false
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
			fired = true
			continue
		}
		keep = append(keep, w)
	}
	c.waiters = keep
	c.mu.Unlock()
	if fired {
		select {
		case <-c.idle:
		case <-time.After(5 * time.Second):
			t.Fatal("the HA goroutine did not come back to wait for its timer")
		}
	}
}

// TestHAUsesInjectedClock runs one node alone on a fake clock: it takes over exactly at the dead
// interval of fake time, however long the test takes in real time.
func TestHAUsesInjectedClock(t *testing.T) {
	clk := &fakeClock{now: t0, idle: make(chan struct{})}
	var cn chanNet
	eng := &lockedEngine{}
	h, err := Start(Config{Listen: addrA, Peers: []netip.AddrPort{addrB}, Priority: 100, Key: key, AdvertInterval: interval, DeadAfter: deadN}, cn.listen(addrA), clk, eng)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	<-clk.idle // started, waiting for its first deadline
	if h.State() != StateBackup {
		t.Fatalf("state %s after start, want backup", h.State())
	}
	for range deadN - 1 {
		clk.advance(t, interval)
	}
	clk.advance(t, interval-time.Millisecond)
	if h.State() != StateBackup {
		t.Fatalf("state %s at %v of fake time, before the dead interval", h.State(), clk.Now().Sub(t0))
	}
	clk.advance(t, time.Millisecond)
	if h.State() != StateActive || eng.last() != StateActive {
		t.Fatalf("state %s (engine %s) at the dead interval, want active", h.State(), eng.last())
	}
	if st := h.Status(); !st.Since.Equal(t0.Add(dead)) || st.Transitions != 2 {
		t.Errorf("status since %v, %d transitions", st.Since.Sub(t0), st.Transitions)
	}
	go func() {
		for range clk.idle { // let the goroutine's last wake-ups through while Close waits for it
		}
	}()
	t.Cleanup(func() { close(clk.idle) }) // after the deferred Close: the goroutine is gone
}

// TestHAPair runs two nodes on the real clock over an in-memory network.
func TestHAPair(t *testing.T) {
	const iv, deadAfter = 10 * time.Millisecond, 10
	var cn chanNet
	start := func(self netip.AddrPort, prio uint8, peer netip.AddrPort) (*HA, *lockedEngine) {
		e := &lockedEngine{}
		h, err := Start(Config{Listen: self, Peers: []netip.AddrPort{peer}, Priority: prio, Key: key,
			AdvertInterval: iv, DeadAfter: deadAfter, Preempt: true, Log: slog.New(slog.NewTextHandler(t.Output(), nil))}, cn.listen(self), SystemClock, e)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h, e
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s", what)
			}
		}
	}
	a, ea := start(addrA, 200, addrB)
	b, eb := start(addrB, 100, addrA)
	eventually("A active, B backup", func() bool { return a.State() == StateActive && b.State() == StateBackup })
	if ea.last() != StateActive || eb.last() != StateBackup {
		t.Errorf("engines: A %s, B %s", ea.last(), eb.last())
	}

	a.SetFault("l0 down")
	eventually("B takes over from faulty A", func() bool { return a.State() == StateFault && b.State() == StateActive })
	if st := a.Status(); st.Fault != "l0 down" || st.Advertised != 0 {
		t.Errorf("faulty A's status: fault %q, advertised priority %d", st.Fault, st.Advertised)
	}
	a.ClearFault()
	eventually("A preempts B", func() bool { return a.State() == StateActive && b.State() == StateBackup })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := a.Resign(ctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	if d := time.Since(t0); d > time.Duration(deadAfter)*iv {
		t.Errorf("Resign took %v; the backup should take over at once", d)
	}
	// Resign returns once A has seen B take over; B's own State may publish a moment later.
	eventually("after Resign: A backup, B active", func() bool { return b.State() == StateActive && a.State() == StateBackup })

	// B dies without a word: A resigned, so nobody takes over.
	b.Close()
	time.Sleep(3 * time.Duration(deadAfter) * iv)
	if a.State() != StateBackup {
		t.Errorf("resigned A became %s", a.State())
	}
	st := a.Status()
	if st.Sent == 0 || st.Received == 0 || st.Transitions < 4 || len(st.Peers) != 1 || st.Peers[0].Alive {
		t.Errorf("A's status %+v", st)
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := a.Resign(ctx); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Resign after Close: %v", err)
	}
}

func TestUDPTransport(t *testing.T) {
	a, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	aAddr := a.c.LocalAddr().(*net.UDPAddr).AddrPort()
	bAddr := b.c.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := a.Send([]byte("hello"), bAddr); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, from, err := b.Receive(buf)
	if err != nil || string(buf[:n]) != "hello" || from != aAddr {
		t.Fatalf("Receive = %q from %s, %v; want hello from %s", buf[:n], from, err, aAddr)
	}
	b.Close()
	if _, _, err := b.Receive(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive after Close: %v, want net.ErrClosed", err)
	}
	if _, err := ListenUDP(netip.MustParseAddrPort("198.18.255.254:8405")); err == nil {
		t.Error("listening on an address this host does not have succeeded")
	}
}
