//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/bpfgen"
)

// engineOS holds the Linux side of the engine: one socket per worker per interface, the eventfd
// that wakes polling workers for shutdown, and the worker goroutines' wait group.
type engineOS struct {
	socks     [][]*afpacket.Socket // [worker][port]: TPACKETv3 RX + TX
	frames    [][]*afpacket.Socket // [worker][port]: TPACKET_V2 RX (nil in throughput mode)
	large     [][]*afpacket.Socket // [worker][port]: send-only, large TX slots for GSO frames
	guard     *kernelGuard         // nftables ingress drops of VIP frames and NAT replies; nil if unavailable
	guardSpec *guardSpec           // what guard drops now
	hosts     hostAddrs            // this host's addresses, shared with the workers
	rxMode    string               // RXModeAuto, RXModeThroughput or RXModeLatency
	standby   bool                 // the sockets take nothing (see SetStandby; guarded by Engine.mu)
	fan       *fanoutPlan          // rules of the fanout program installed last; nil without fanout (guarded by Engine.mu)
	fanSpec   bpfgen.FanoutSpec    // what that program was built from (guarded by Engine.mu)
	rx        rxState
	wakefd    int
	wakefds   []int // per worker: the eventfd that wakes it from poll(2): another worker handed it fragments, or sync work waits
	stopping  chan struct{}
	wg        sync.WaitGroup
	closed    bool
	xdp       *xdpState // io = "afxdp"; nil with AF_PACKET
}

// Transmit ring geometry: smallTxSlots slots of smallTxSlot bytes hold any frame up to a
// 1500-byte MTU with a VLAN tag (plus the ring's and the virtio header); larger frames go through
// the send-only socket's largeTxSlots slots, each as large as a 64 KiB GSO frame needs.
const (
	smallTxSlot  = 2048
	smallTxSlots = 2048
	largeTxSlots = 32
)

// rejectAll is the socket filter of a standby engine: nothing is received.
var rejectAll = []bpf.RawInstruction{{Op: 0x06, K: 0}} // ret #0

// latencySpin is how long a worker on the latency ring keeps checking its rings after the last
// frame before it sleeps in poll(2): about a round trip through real servers on a LAN.
const latencySpin = 200 * time.Microsecond

// pollTimeout bounds how long an idle worker sleeps before it expires connections and publishes
// counters again.
const pollTimeout = 100 // ms

// publishEvery is how often a busy worker publishes its counters.
const publishEvery = 50 * time.Millisecond

// New opens the sockets on every interface for every worker, publishes t and starts the workers.
// Receive offloads (GRO, LRO) are switched off on each interface first: merged frames larger than
// the MTU would not fit the rings' frames and could not be sent on unchanged.
func New(cfg Config, t *Tables) (*Engine, error) {
	if len(cfg.Interfaces) == 0 {
		return nil, errorf("no interfaces configured")
	}
	if len(cfg.Interfaces) > 32 {
		return nil, errorf("%d interfaces configured; at most 32 are supported", len(cfg.Interfaces))
	}
	n := cfg.Workers
	if n <= 0 {
		n = runtime.NumCPU()
	}
	e := &Engine{cfg: cfg, epoch: time.Now()}
	if err := e.lookupInterfaces(); err != nil {
		return nil, err
	}
	if err := checkForwarding(cfg.Interfaces); err != nil {
		return nil, err
	}
	filter, err := bpfgen.SocketFilter(filterSpec(t))
	if err != nil {
		return nil, errorf("socket filter: %w", err)
	}
	if e.os.standby = cfg.Standby; cfg.Standby {
		filter = standbyFilter
	}
	if cfg.Priority < 0 || cfg.Priority > 99 {
		return nil, errorf("worker priority %d: use a SCHED_FIFO priority from 1 to 99, or 0 for the normal scheduler", cfg.Priority)
	}
	switch cfg.IO {
	case "", IOAFPacket:
	case IOAFXDP:
		if err := e.startXDP(t, n); err != nil {
			e.closeSockets()
			return nil, err
		}
		return e, nil
	default:
		return nil, errorf("packet I/O %q: use %q or %q", cfg.IO, IOAFPacket, IOAFXDP)
	}
	rx, err := rxSettingsOf(cfg.RXMode)
	if err != nil {
		return nil, err
	}
	// start acquires every kernel resource; whatever it got before a failure is released here, in
	// one place.
	if err := e.start(t, n, filter, rx); err != nil {
		e.closeSockets()
		return nil, err
	}
	return e, nil
}

// lookupInterfaces finds the configured interfaces and switches their receive offloads off.
func (e *Engine) lookupInterfaces() error {
	for _, name := range e.cfg.Interfaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return errorf("interface %q: %w (check [dataplane] interfaces)", name, err)
		}
		if len(ifi.HardwareAddr) != 6 {
			return errorf("interface %q has no Ethernet address; govs needs Ethernet interfaces", name)
		}
		var mac [6]byte
		copy(mac[:], ifi.HardwareAddr)
		e.ifaces = append(e.ifaces, Interface{Name: name, Index: ifi.Index, MAC: mac})
		changed, err := afpacket.DisableReceiveOffloads(name)
		if err != nil {
			e.cfg.warnf("could not switch receive offloads off on %s: %v", name, err)
		} else if len(changed) > 0 {
			e.cfg.logf("switched %v off on %s so frames arrive at their wire size", changed, name)
		}
	}
	return nil
}

// start opens the engine's eventfd, kernel guard and sockets for n workers, publishes t and starts
// the goroutines. On error the caller releases what start acquired (closeSockets); no goroutine
// has started then.
func (e *Engine) start(t *Tables, n int, filter []bpf.RawInstruction, rx rxSettings) error {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return errorf("eventfd: %w", err)
	}
	e.os.wakefd = fd
	e.os.stopping = make(chan struct{})
	ring := e.os.initRX(rx.mode, n)
	twoRings := rx.mode != RXModeThroughput
	var fanout []bpf.RawInstruction
	if n > 1 || twoRings {
		e.os.fan = planFanout(t, nil, n)
		e.fan.Store(e.os.fan)
		e.os.fanSpec = e.os.fan.spec(t)
		if fanout, err = bpfgen.FanoutProgramSpec(e.os.fanSpec, n, int(ring)*n); err != nil {
			return errorf("fanout program: %w", err)
		}
	}
	e.startGuard(t)

	blocksCfg, largeCfg, framesCfg := socketConfigs(filter, fanout)
	macs := make([][6]byte, len(e.ifaces))
	for pi, ifc := range e.ifaces {
		macs[pi] = ifc.MAC
	}
	for wi := range n {
		if err := e.openPorts(&e.os.socks, wi, "", blocksCfg); err != nil {
			return err
		}
		if err := e.addWorker(wi, n, asPorts(e.os.socks[wi]), macs, largeCfg); err != nil {
			return err
		}
	}
	if err := e.linkFragments(); err != nil {
		return err
	}
	for wi, w := range e.workers {
		if w.sync != nil {
			fd := e.os.wakefds[wi]
			w.sync.wake = func() { wakeFD(fd) }
		}
	}
	if twoRings {
		// A fanout member's index is its ring set * n + its worker: every TPACKETv3 socket joins
		// its interface's group before any TPACKET_V2 socket.
		for wi := range n {
			if err := e.openPorts(&e.os.frames, wi, " (latency ring)", framesCfg); err != nil {
				return err
			}
		}
	}

	e.tables.Store(t)
	cpus := allowedCPUs()
	for wi, w := range e.workers {
		var frames []*afpacket.Socket
		if twoRings {
			frames = e.os.frames[wi]
		}
		e.os.wg.Add(1)
		go e.routineWorker(w, wi, e.os.socks[wi], frames, cpus[wi%len(cpus)])
	}
	if rx.mode == RXModeAuto {
		e.os.wg.Add(1)
		go e.routineRXControl(newRXPolicy(rx.high, rx.low))
	}
	if n > 1 {
		e.os.wg.Add(1)
		go e.routineFanout()
	}
	e.cfg.logf("data plane: %d workers on %v, CPUs %v, rx_mode %s (receiving on the %s ring)", n, e.cfg.Interfaces, cpus, rx.mode, ring)
	return nil
}

// addWorker makes worker wi of n, which transmits through ports (one per interface, with MAC
// addresses macs) and, for frames too large for them, through send-only sockets of largeCfg.
func (e *Engine) addWorker(wi, n int, ports []Transmitter, macs [][6]byte, largeCfg func(pi int, ifc Interface) afpacket.Config) error {
	if err := e.openPorts(&e.os.large, wi, " (large frames)", largeCfg); err != nil {
		return err
	}
	w, err := NewWorker(wi, ports, macs, e.cfg.Conntrack)
	if err != nil {
		return errorf("worker %d: connection table: %w", wi, err)
	}
	w.SetLargePorts(asPorts(e.os.large[wi]))
	w.SetWorkers(n) // FullNAT local ports: worker wi's are those the fanout (or steering) sends to wi
	w.hosts = &e.os.hosts
	if e.cfg.Sync {
		w.EnableSync()
		w.sync.snapEvery = int64(n) * 1e9 / snapshotRate
	}
	e.workers = append(e.workers, w)
	return nil
}

// linkFragments gives the workers their fragment handover rings (see frags.go) and each an eventfd
// that wakes it from poll(2), which another worker writes when it hands it fragments (and connection
// sync when sync work waits).
func (e *Engine) linkFragments() error {
	for range e.workers {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			return errorf("eventfd: %w", err)
		}
		e.os.wakefds = append(e.os.wakefds, fd)
	}
	if len(e.workers) > fragMaxWorkers {
		e.cfg.warnf("%d workers: IP fragments are forwarded by the worker that receives them (a datagram's first fragment may start a connection its flow's other packets do not reach); fragment handover works with up to %d workers", len(e.workers), fragMaxWorkers)
	}
	fds := e.os.wakefds
	linkFragments(e.workers, &e.fan, func(to int) { wakeFD(fds[to]) }, 0)
	return nil
}

// wakeFD adds one to eventfd fd, which wakes the worker polling it. EAGAIN means the counter is at
// its maximum: the worker is woken already.
func wakeFD(fd int) {
	one := [8]byte{1}
	_, _ = unix.Write(fd, one[:])
}

// openPorts opens worker wi's socket on every interface, configured by conf, as row wi of set (one
// of engineOS's socket sets). What it opened before a failure stays in set, for closeSockets.
func (e *Engine) openPorts(set *[][]*afpacket.Socket, wi int, what string, conf func(pi int, ifc Interface) afpacket.Config) error {
	*set = append(*set, make([]*afpacket.Socket, 0, len(e.ifaces)))
	row := &(*set)[wi]
	for pi, ifc := range e.ifaces {
		s, err := afpacket.Open(conf(pi, ifc))
		if err != nil {
			return errorf("worker %d on %s%s: %w", wi, ifc.Name, what, err)
		}
		*row = append(*row, s)
	}
	return nil
}

// socketConfigs returns the configuration of each socket set's socket on interface pi, given the
// socket filter and the fanout program (nil: no fanout group): blocks for the TPACKETv3 sockets
// (throughput ring, and the transmit ring of small slots), large for the send-only sockets with
// large slots, frames for the TPACKET_V2 sockets (latency ring). Both receiving sets of an
// interface join its one fanout group.
func socketConfigs(filter, fanout []bpf.RawInstruction) (blocks, large, frames func(pi int, ifc Interface) afpacket.Config) {
	pid := os.Getpid()
	group := func(pi int) uint16 { return uint16(pid*16 + pi + 1) }
	blocks = func(pi int, ifc Interface) afpacket.Config {
		c := afpacket.Config{
			Interface:   ifc.Name,
			Filter:      filter,
			VnetHdr:     true,
			QdiscBypass: true,
			// Many small slots: a slot stays taken until the device frees the frame, which on
			// veth (and a NIC's TX completion) can be a while under load.
			TxFrameSize: smallTxSlot,
			TxFrames:    smallTxSlots,
		}
		if fanout != nil {
			c.FanoutGroup, c.FanoutProg = group(pi), fanout
		}
		return c
	}
	// Large slots for GSO frames (up to 64 KiB, from local TSO senders): with them in every slot
	// the common ring would hold few frames.
	// Send-only: no packet tap, so no received frame is copied to it or runs a filter.
	large = func(_ int, ifc Interface) afpacket.Config {
		return afpacket.Config{
			Interface:   ifc.Name,
			SendOnly:    true,
			VnetHdr:     true,
			QdiscBypass: true,
			TxFrames:    largeTxSlots,
		}
	}
	frames = func(pi int, ifc Interface) afpacket.Config {
		return afpacket.Config{
			Interface:   ifc.Name,
			Filter:      filter,
			VnetHdr:     true,
			FrameRing:   true,
			FanoutGroup: group(pi),
			FanoutProg:  fanout,
		}
	}
	return blocks, large, frames
}

// asPorts returns socks as a worker's transmit ports.
func asPorts(socks []*afpacket.Socket) []Transmitter {
	ps := make([]Transmitter, len(socks))
	for i, s := range socks {
		ps[i] = s
	}
	return ps
}

// program makes the sockets admit, spread and guard t's traffic. Publish has handed t to the
// workers already, so they know every service the new programs admit. The guard's drop rules go
// first (its ingress hook runs after the packet taps: it never hides a frame from govs); then the
// fanout program, so that the first frames of a new service already reach the right worker; then
// the socket filters of every socket of both ring sets (the fanout program may send a frame to
// either set, and a socket's own filter decides). Each program is replaced atomically, and the old
// and new programs admit and hash a service that t keeps alike, so its frames see no gap.
func (eo *engineOS) program(e *Engine, t *Tables) error {
	var plan *fanoutPlan
	var fspec bpfgen.FanoutSpec
	if eo.fan != nil {
		plan = planFanout(t, eo.fan, len(e.workers))
		fspec = plan.spec(t)
	}
	var filter, fanout []bpf.RawInstruction // AF_PACKET's (programXDP builds AF_XDP's)
	if eo.xdp == nil {
		var err error
		if filter, err = bpfgen.SocketFilter(filterSpec(t)); err != nil {
			return errorf("socket filter: %w", err)
		}
		if plan != nil {
			ring, _ := eo.rx.load()
			if fanout, err = bpfgen.FanoutProgramSpec(fspec, len(e.workers), int(ring)*len(e.workers)); err != nil {
				return errorf("fanout program: %w", err)
			}
		}
	}
	if eo.guard != nil {
		spec := guardSpecFor(t, localAddrs())
		if err := eo.guard.set(spec); err != nil {
			return errorf("%w", err)
		}
		eo.guardSpec = spec
	}
	if eo.xdp != nil {
		return eo.programXDP(e, t, plan, fspec)
	}
	if fanout != nil {
		if err := eo.setFanout(fanout); err != nil {
			return err
		}
		plan.report(t, eo.fan, e.cfg.logf)
		eo.fan, eo.fanSpec = plan, fspec
		e.fan.Store(plan)
	}
	if eo.standby {
		filter = standbyFilter
	}
	return eo.setFilter(filter)
}

// setFanout installs prog as every interface's fanout program.
func (eo *engineOS) setFanout(prog []bpf.RawInstruction) error {
	// One member per group is enough: the program belongs to the group.
	for _, s := range eo.socks[0] {
		if err := s.SetFanoutProg(prog); err != nil {
			return errorf("set fanout program: %w", err)
		}
	}
	return nil
}

// fanoutCheckEvery is how often the engine re-plans the fanout while a service's hash rule waits
// for its established connections to end (see fanoutPlan).
const fanoutCheckEvery = time.Second

// routineFanout applies waiting hash rules once their services' connections have ended.
func (e *Engine) routineFanout() {
	defer e.os.wg.Done()
	tick := time.NewTicker(fanoutCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-e.os.stopping:
			return
		case <-tick.C:
		}
		e.mu.Lock()
		if !e.os.closed && e.os.fan.waiting() {
			if err := e.os.refan(e); err != nil {
				e.cfg.warnf("%v", err)
			}
		}
		e.mu.Unlock()
	}
}

// refan re-plans the fanout for the tables in force and installs it if its rules changed.
func (eo *engineOS) refan(e *Engine) error {
	t := e.tables.Load()
	plan := planFanout(t, eo.fan, len(e.workers))
	spec := plan.spec(t)
	switch {
	case plan.sameRules(eo.fan):
	case eo.xdp != nil:
		steer, err := xdpSteer(spec, len(e.workers))
		if err != nil {
			return err
		}
		if err := e.setXDPPrograms(eo.xdp.filter, steer); err != nil {
			return err
		}
	default:
		ring, _ := eo.rx.load()
		prog, err := bpfgen.FanoutProgramSpec(spec, len(e.workers), int(ring)*len(e.workers))
		if err != nil {
			return errorf("fanout program: %w", err)
		}
		if err := eo.setFanout(prog); err != nil {
			return err
		}
	}
	plan.report(t, eo.fan, e.cfg.logf)
	eo.fan, eo.fanSpec = plan, spec
	e.fan.Store(plan)
	return nil
}

// routineWorker is a worker's goroutine: locked to an OS thread pinned to one CPU, it drains its
// rings, kicks its TX rings once per round, expires connections and sleeps in poll(2) when idle.
// It holds its thread for its whole life, so a blocking poll costs no other goroutine anything.
//
// With two rings per interface (frames non-nil), it reads the ring the fanout program sends to
// and, before that, the other one: the other ring gets only frames the fanout program aborted on
// (too short to parse, see bpfgen.FanoutProgramSpec) and, right after a switch, the frames that
// arrived before it. Until the old ring has handed over its last frame (a partly filled block
// waits for its retire timer), the worker does not read the new ring of that interface, so no
// flow is reordered; then it acknowledges the switch.
func (e *Engine) routineWorker(w *Worker, wi int, socks, frames []*afpacket.Socket, cpu int) {
	defer e.os.wg.Done()
	runtime.LockOSThread()
	e.pinWorker(w, cpu)
	fds := make([]unix.PollFd, 0, 2*len(socks)+1)
	for i, s := range socks {
		fds = append(fds, unix.PollFd{Fd: int32(s.Fd()), Events: unix.POLLIN})
		if frames != nil {
			fds = append(fds, unix.PollFd{Fd: int32(frames[i].Fd()), Events: unix.POLLIN})
		}
	}
	fds = append(fds, unix.PollFd{Fd: int32(e.os.wakefd), Events: unix.POLLIN})
	fds = append(fds, unix.PollFd{Fd: int32(e.os.wakefds[wi]), Events: unix.POLLIN}) // last: see sleepWorker
	ring, gen := e.os.rx.load()
	e.os.rx.acks[wi].Store(gen)
	draining := make([]bool, len(socks)) // per port: the old ring still has frames
	var drainStart int64
	ndrain := 0
	var round roundState
	for {
		if t := e.tables.Load(); t != w.tables {
			w.SetTables(t)
		}
		now := int64(time.Since(e.epoch))
		if frames != nil {
			if r, g := e.os.rx.load(); g != gen {
				ring, gen = r, g
				drainStart, ndrain = now, len(socks)
				for i := range draining {
					draining[i] = true
				}
			}
		}
		// Synced connections first: a worker that has slept on a backup's standby rings installs
		// what is queued before the first frames after a takeover look for it.
		w.now = now
		w.drainSync()
		got := w.DrainFragments(now)
		for i, s := range socks {
			active := s
			if frames != nil {
				other := frames[i]
				if ring == ringFrames {
					active, other = frames[i], s
				}
				got += w.Receive(i, other, now)
				if draining[i] {
					if !other.RxIdle() && now-drainStart < int64(rxDrainMax) {
						continue // the new ring waits until the old one is empty
					}
					if !other.RxIdle() {
						e.cfg.logf("worker %d: %s ring of %s still held frames %v after the switch; reading the new ring anyway",
							w.id, ring^1, e.ifaces[i].Name, rxDrainMax)
					}
					draining[i] = false
					if ndrain--; ndrain == 0 {
						e.os.rx.acks[wi].Store(gen)
					}
				}
			}
			got += w.Receive(i, active, now)
		}
		// On the latency ring, keep looking for a while after the last frame instead of sleeping
		// in poll(2): the answer to what was just forwarded usually comes back within a round
		// trip, and waking a sleeping thread costs more than that round trip on a VM.
		spinning, stop := e.endRound(w, wi, &round, got, now, ring == ringFrames && frames != nil)
		if stop {
			return
		}
		if got == 0 && !spinning {
			timeout := pollTimeout
			if ndrain > 0 {
				timeout = 1 // the old block retires within its timer; the new ring may be ready already
			}
			e.sleepWorker(w, fds, timeout)
		}
	}
}

// roundState is what a worker's loop carries from one round to the next.
type roundState struct {
	lastPub, lastBusy int64 // when it last published its counters, and last took a frame
	packets           uint64
}

// endRound finishes worker wi's round, in which it took got frames: it flushes the transmit
// rings, wakes the workers it handed fragments to, expires connections and publishes its
// counters (every publishEvery, and before it sleeps). It reports whether the worker looks again
// at once instead of sleeping (canSpin, and within latencySpin of its last frame), and whether
// the engine is stopping (the counters are published then too).
func (e *Engine) endRound(w *Worker, wi int, r *roundState, got int, now int64, canSpin bool) (spinning, stop bool) {
	r.packets += uint64(got)
	e.os.rx.packets[wi].Store(r.packets)
	w.FlushAll()
	w.wakePeers()
	w.Expire(now)
	if got > 0 {
		r.lastBusy = now
	}
	spinning = got == 0 && canSpin && now-r.lastBusy < int64(latencySpin)
	if now-r.lastPub >= int64(publishEvery) || (got == 0 && !spinning) {
		w.Publish()
		r.lastPub = now
	}
	select {
	case <-e.os.stopping:
		w.Publish()
		return spinning, true
	default:
	}
	return spinning, false
}

// sleepWorker sleeps in poll(2) on a worker's descriptors for up to timeout ms (less when sync
// work is due), until one is ready. The last two descriptors are the engine's eventfd and the
// worker's own, which it resets: the fragment rings and sync work it announces are taken in the
// next round.
func (e *Engine) sleepWorker(w *Worker, fds []unix.PollFd, timeout int) {
	if w.sync != nil {
		timeout = w.sync.sleepTimeout(timeout)
	}
	for i := range fds {
		fds[i].Revents = 0
	}
	if _, err := unix.Poll(fds, timeout); err != nil && !errors.Is(err, unix.EINTR) {
		e.cfg.warnf("worker %d: poll: %v", w.id, err)
		time.Sleep(10 * time.Millisecond)
	}
	if err := clearSocketErrors(fds[:len(fds)-2]); err != nil {
		if now := time.Now(); now.Sub(w.sockErrLogged) >= time.Minute {
			w.sockErrLogged = now
			e.cfg.warnf("worker %d: %v (logged at most once a minute)", w.id, err)
		}
	}
	if me := fds[len(fds)-1]; me.Revents != 0 {
		var buf [8]byte
		_, _ = unix.Read(int(me.Fd), buf[:])
	}
	if w.sync != nil {
		w.sync.woke()
	}
}

// clearSocketErrors takes the pending error of every socket in fds that poll(2) reported one
// for, and returns the first. A packet socket whose interface goes down, or is deleted, gets
// ENETDOWN as its error, and poll(2) reports it at once, every time, until it is taken: a worker
// that never reads it would not sleep again (a link flap, or a deleted interface, cost 100-155%
// of a CPU). A ring-reading worker has no other use for the error, so it is taken here.
func clearSocketErrors(fds []unix.PollFd) error {
	var first error
	for i := range fds {
		if fds[i].Revents&unix.POLLERR == 0 {
			continue
		}
		v, err := unix.GetsockoptInt(int(fds[i].Fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && v != 0 {
			err = unix.Errno(v)
		}
		if err != nil && first == nil {
			first = fmt.Errorf("a receive socket reported %v (its interface went down, or away), taken", err)
		}
	}
	return first
}

// pinWorker pins the calling thread, locked to w's goroutine, to cpu and gives it the configured
// scheduling priority.
func (e *Engine) pinWorker(w *Worker, cpu int) {
	// Pinning keeps a worker's rings, table and counters in one CPU's caches; without it the
	// scheduler moves busy threads between CPUs. The thread is discarded when the goroutine ends
	// (still locked), so the affinity never leaks to other goroutines.
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		e.cfg.warnf("worker %d: could not pin to CPU %d: %v", w.id, cpu, err)
	}
	// The policy, like the affinity, dies with the thread (see above).
	if p := e.cfg.Priority; p > 0 {
		if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(p)}, 0); err != nil {
			e.cfg.warnf("worker %d: could not run SCHED_FIFO at priority %d ([dataplane] worker_priority; needs CAP_SYS_NICE): %v", w.id, p, err)
		}
	}
}

// Close stops the workers, waits for them and closes (unmaps) every ring. It does not hold mu
// while it waits: the engine's goroutines take it (a ring switch, a fanout re-plan).
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.os.closed {
		e.mu.Unlock()
		return nil
	}
	e.os.closed = true
	close(e.os.stopping)
	var one [8]byte
	one[0] = 1
	unix.Write(e.os.wakefd, one[:])
	e.mu.Unlock()
	e.os.wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.closeSockets(); err != nil {
		return errorf("%w", err)
	}
	return nil
}

// closeSockets closes every socket, the kernel guard and the wake-up eventfd, and returns what
// failed to close.
func (e *Engine) closeSockets() error {
	var errs []error
	for _, set := range []*[][]*afpacket.Socket{&e.os.socks, &e.os.frames, &e.os.large} {
		for _, socks := range *set {
			for _, s := range socks {
				if err := s.Close(); err != nil {
					errs = append(errs, err)
				}
			}
		}
		*set = nil
	}
	errs = append(errs, e.os.closeXDP())
	if e.os.guard != nil {
		errs = append(errs, e.os.guard.close())
		e.os.guard = nil
	}
	if e.os.wakefd > 0 {
		if err := unix.Close(e.os.wakefd); err != nil {
			errs = append(errs, os.NewSyscallError("close eventfd", err))
		}
		e.os.wakefd = -1
	}
	for _, fd := range e.os.wakefds {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, os.NewSyscallError("close eventfd", err))
		}
	}
	e.os.wakefds = nil
	return errors.Join(errs...)
}

// SocketStats sums the kernel's ring statistics (received, dropped by a full ring) over every socket.
func (e *Engine) SocketStats() afpacket.Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	sum := e.os.xdpStats()
	for _, socks := range append(append([][]*afpacket.Socket(nil), e.os.socks...), e.os.frames...) {
		for _, s := range socks {
			if st, err := s.Stats(); err == nil {
				sum.Packets += st.Packets
				sum.Drops += st.Drops
				sum.Freezes += st.Freezes
			}
		}
	}
	return sum
}

// allowedCPUs lists the CPUs this process may run on, in order.
func allowedCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		cpus := make([]int, runtime.NumCPU())
		for i := range cpus {
			cpus[i] = i
		}
		return cpus
	}
	var cpus []int
	for i := 0; i < 1024 && len(cpus) < set.Count(); i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// checkForwarding refuses to start when the kernel would forward the frames govs forwards: with
// IP forwarding on, a frame to a VIP or a NAT reply to a client would leave twice.
func checkForwarding(ifaces []string) error {
	for _, name := range ifaces {
		for _, f := range []struct{ path, sysctl string }{
			{"/proc/sys/net/ipv4/conf/" + name + "/forwarding", "net.ipv4.conf." + name + ".forwarding"},
			{"/proc/sys/net/ipv6/conf/" + name + "/forwarding", "net.ipv6.conf." + name + ".forwarding"},
		} {
			b, err := os.ReadFile(f.path)
			if err != nil {
				continue // IPv6 disabled on the interface, for instance
			}
			if len(b) > 0 && b[0] == '1' {
				return errorf("the kernel forwards IP on %s (%s=1), so it would forward govs's traffic a second time; "+
					"run `sysctl -w %s=0` (and net.ipv4.ip_forward=0 / net.ipv6.conf.all.forwarding=0) on the balancer", name, f.sysctl, f.sysctl)
			}
		}
	}
	return nil
}

// fanoutRules returns the hash rules of the fanout program in force (nil: none, or one worker).
// A plan is never modified once made, so its map may be read after mu is released.
func (e *Engine) fanoutRules() map[serviceKey]bpfgen.HashRule {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.os.fan == nil {
		return nil
	}
	return e.os.fan.rules
}
