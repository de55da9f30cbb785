//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/dataplane/xsk"
)

// With io = "afxdp" frames reach the worker through AF_XDP sockets instead of AF_PACKET rings:
// an XDP program on each interface runs govs's socket filter (compiled to eBPF) and redirects
// what it accepts into the socket of the frame's receive queue, before the kernel builds an skb
// (driver mode) or right after (generic mode); everything else goes on to the kernel
// (XDP_PASS). What the program takes, the kernel never sees: the program leaves replies to this
// host's own addresses (health checks) and ICMP to them to the kernel, where AF_PACKET only
// copies a frame and the kernel sees it anyway (bench/README.md, "Lever 1 measured").
//
// Each worker owns the sockets of some queues of every interface (queue q is worker q mod n's),
// so an interface needs a queue per worker: a worker transmits through the socket of its first
// queue. RSS does not keep a NAT connection's two directions on one queue, so with several workers
// the program also runs govs's fanout hash and marks each frame with the worker it belongs to;
// the worker that reads a frame hands it on when it is another's (steer.go). Frames larger than
// a UMEM frame (GSO frames from local senders, which only generic mode can see) leave through the
// send-only AF_PACKET socket with large slots.

// xdpState is the engine's AF_XDP side (nil with AF_PACKET).
type xdpState struct {
	mode   xsk.Mode
	progs  []*xsk.Program    // per interface
	socks  [][]*xsk.Socket   // [interface][queue]; queue q is worker q mod len(ports)'s
	ports  [][]*xskPort      // [worker][interface]: the socket of the worker's first queue there, its transmit port
	filter []bpf.Instruction // the programs' filter now (nil: every frame to the kernel)
	steer  []bpf.Instruction // the programs' steering program now (nil with one worker)
	gone   []bool            // per interface: deleted while govs ran; its program went with it
	notTo  []netip.Addr      // this host's addresses filter leaves to the kernel (see xdpFilter)
	asleep []atomic.Bool     // per worker: it may be asleep in poll(2), so a hand-off must wake it
	irq    *irqDefer         // [dataplane] xdp_irq_defer; nil: off
	maxMTU []int             // per interface: the largest MTU its UMEM frames take (xskFrameSize)
}

// xskPort is one AF_XDP socket as a worker's Receiver and Transmitter.
type xskPort struct {
	s     *xsk.Socket
	bufs  [MaxBatch][]byte
	steer *steerOut // with several workers: where the frames of other workers go
}

// NextBatch hands out the next received frames that are this worker's; they stay in the UMEM
// until the next call, which gives them back to the kernel's fill ring first. The frames of
// other workers are copied to them on the way (steerOut.keep).
func (p *xskPort) NextBatch(fs []afpacket.Frame) int {
	bufs := p.bufs[:min(len(fs), len(p.bufs))]
	if p.steer == nil {
		n := p.s.RxBatch(bufs)
		for i := range n {
			fs[i] = afpacket.Frame{Data: bufs[i], Meta: afpacket.RxMeta{Len: uint32(len(bufs[i])), Status: statusCsumUnknown}}
		}
		return n
	}
	// A batch of other workers' frames only is not the end of the socket's frames: look on, a
	// few batches at most, and no more than a round's budget of frames all told.
	for range 4 {
		if p.steer.read >= rxBudget {
			return 0
		}
		n := p.s.RxBatchSteer(bufs, p.steer.to[:])
		if n == 0 {
			return 0
		}
		p.steer.read += n
		if k := p.steer.keep(bufs[:n], fs); k > 0 {
			return k
		}
	}
	return 0
}

func (p *xskPort) TxFrame() []byte { return p.s.TxFrame() }

// TxCommit queues the frame. An AF_XDP frame carries no virtio header: the worker asks for one
// only for frames it received with one (AF_PACKET), or GSO frames, which go to the large port.
func (p *xskPort) TxCommit(n int, _ afpacket.VnetHdr) { p.s.TxCommit(n) }

func (p *xskPort) TxSend(frame []byte, vnet afpacket.VnetHdr) bool {
	if vnet.GSOType != afpacket.VnetHdrGSONone {
		return false // no segmentation offload through an XSK: the caller uses the large port
	}
	b := p.s.TxFrame()
	if b == nil || len(frame) > len(b) {
		if b != nil {
			p.s.TxCommit(0) // gives the frame back
		}
		return false
	}
	p.s.TxCommit(copy(b, frame))
	return true
}

func (p *xskPort) Flush() (int, error) { return p.s.Flush() }

// xskTxBudget is how many frames one kick of an AF_XDP socket sends in copy mode
// (XDP_MAX_TX_SKB_BUDGET; the kernel's default, 32, takes 8 kicks for a worker's 256-frame round).
const xskTxBudget = 256

// xskFrameSize returns the UMEM frame size for interface name: a received frame must fit a
// frame less the XDP_PACKET_HEADROOM (256 bytes) the kernel keeps in front of it in copy mode,
// or the kernel drops it. Room is kept for two VLAN tags and the steering word.
func xskFrameSize(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, errorf("interface %q: %w", name, err)
	}
	for _, size := range []int{2048, 4096} {
		if ifi.MTU <= size-256-xskFrameOverhead {
			return size, nil
		}
	}
	return 0, errorf("interface %s has MTU %d; with io = \"afxdp\" govs takes frames up to an MTU of %d: lower the MTU, or set io = \"afpacket\"", name, ifi.MTU, 4096-256-xskFrameOverhead)
}

// xskFrameOverhead is what a UMEM frame holds beyond the MTU: the Ethernet header, two VLAN tags
// and the steering word (xsk.Program.SetFilterSteer).
const xskFrameOverhead = 14 + 8 + 4

// InterfaceProblems says, one line each, what keeps an interface from carrying its traffic
// through govs since it started, with what to do; nil when nothing does. With io = "afxdp" the
// sockets and UMEM frames are set up for the queues and MTU each interface had at start: frames
// on a queue added since (ethtool -L) reach no socket, and frames larger than a UMEM frame
// (after the MTU was raised) are dropped by the kernel. AF_PACKET reads every queue, and counts
// frames larger than its ring's slots (capture_truncated): nil.
func (e *Engine) InterfaceProblems() []string {
	e.mu.Lock()
	x := e.os.xdp
	var gone []bool
	if x != nil {
		gone = slices.Clone(x.gone)
	}
	e.mu.Unlock()
	if x == nil {
		return nil
	}
	var out []string
	for pi, ifc := range e.ifaces {
		if pi < len(gone) && gone[pi] {
			continue // said when it went (setXDPPrograms)
		}
		dir := filepath.Join("/sys/class/net", ifc.Name)
		if _, err := os.Stat(dir); err != nil {
			continue // gone: HA's interface tracking and setXDPPrograms say so
		}
		if q, have := rxQueues(ifc.Name), len(x.socks[pi]); q > have {
			out = append(out, fmt.Sprintf("interface %s has %d receive queues, and govs reads the %d it had at start: what arrives on the others goes to the kernel instead of govs; restart govs, or set the queues back (ethtool -L %s combined %d, or rx %d on a veth)", ifc.Name, q, have, ifc.Name, have, have))
		}
		if b, err := os.ReadFile(filepath.Join(dir, "mtu")); err == nil {
			if mtu, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && mtu > x.maxMTU[pi] {
				out = append(out, fmt.Sprintf("interface %s has MTU %d, and govs's AF_XDP frames, sized at start, take an MTU of %d at most: the kernel drops larger frames; lower the MTU (ip link set %s mtu %d), or restart govs (io = \"afxdp\" takes up to %d)", ifc.Name, mtu, x.maxMTU[pi], ifc.Name, x.maxMTU[pi], 4096-256-xskFrameOverhead))
			}
		}
	}
	return out
}

// rxQueues returns how many receive queues interface name has, from sysfs (1 if it cannot tell).
func rxQueues(name string) int {
	m, err := filepath.Glob("/sys/class/net/" + name + "/queues/rx-*")
	if err != nil || len(m) == 0 {
		return 1
	}
	return len(m)
}

// xdpFilter is the XDP programs' filter for t: the AF_PACKET socket filter's choice, minus what
// belongs to this host, whose addresses are locals (see the comment at the top). nil while
// standing by: every frame to the kernel.
func xdpFilter(t *Tables, standby bool, locals []netip.Addr) ([]bpf.Instruction, error) {
	if standby {
		return nil, nil
	}
	spec := filterSpec(t)
	spec.ICMPTo = nil // ICMP to this host's addresses: the tunnels' path MTU errors, but also pings
	spec.NotTo = locals
	spec.KernelND = true
	raw, err := bpfgen.SocketFilter(spec)
	if err != nil {
		return nil, errorf("socket filter: %w", err)
	}
	return disassemble(raw, "socket filter")
}

// xdpSteer is the XDP programs' steering program for the fanout spec with n workers (nil for one).
func xdpSteer(spec bpfgen.FanoutSpec, n int) ([]bpf.Instruction, error) {
	if n <= 1 {
		return nil, nil
	}
	raw, err := bpfgen.SteerProgramSpec(spec, n)
	if err != nil {
		return nil, errorf("steering program: %w", err)
	}
	return disassemble(raw, "steering program")
}

func disassemble(raw []bpf.RawInstruction, what string) ([]bpf.Instruction, error) {
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		return nil, errorf("%s: does not disassemble", what)
	}
	return insns, nil
}

// xdpMaxWorkers is the most workers io = "afxdp" runs (config.MaxXDPWorkers): a worker's
// hand-off wake mask has 64 bits.
const xdpMaxWorkers = 64

// XDPWorkers is the number of workers io = "afxdp" runs when [dataplane] workers is not set: one a
// CPU, but no more than the fewest receive queues of the interfaces (each worker reads and
// transmits through queues of its own).
func XDPWorkers(interfaces []string) int {
	n := min(runtime.NumCPU(), xdpMaxWorkers)
	for _, name := range interfaces {
		n = min(n, rxQueues(name))
	}
	return max(n, 1)
}

// startXDP is start for io = "afxdp" with n workers (see the comment at the top).
func (e *Engine) startXDP(t *Tables, n int) error {
	if n > xdpMaxWorkers {
		return errorf("%d workers: io = \"afxdp\" runs at most %d; set [dataplane] workers lower", n, xdpMaxWorkers)
	}
	for _, ifc := range e.ifaces {
		if q := rxQueues(ifc.Name); q < n {
			// Configuration validation says this first, with the way out (config.XDPQueuesHint).
			return errorf("interface %s has %d receive queue(s) and %d workers are configured: with io = \"afxdp\" each worker needs a receive queue of its own on every interface; give %s more queues, or set [dataplane] workers = %d", ifc.Name, q, n, ifc.Name, q)
		}
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return errorf("eventfd: %w", err)
	}
	e.os.wakefd = fd
	e.os.stopping = make(chan struct{})
	e.os.initRX(RXModeThroughput, n)
	e.startGuard(t)
	x := &xdpState{mode: xsk.ModeDriver, asleep: make([]atomic.Bool, n)}
	if e.cfg.XDPMode == XDPModeGeneric {
		x.mode = xsk.ModeGeneric
		e.cfg.warnf("xdp_mode = \"generic\": the XDP program sees frames as the stack has them, and a GSO frame from a sender on this host (over veth, say) is larger than an AF_XDP frame: the kernel drops it (counted in ring_drops); use driver mode where the driver has native XDP (veth does)")
	}
	e.os.xdp = x
	x.notTo = localAddrs()
	filter, err := xdpFilter(t, e.os.standby, x.notTo)
	if err != nil {
		return err
	}
	if n > 1 {
		e.os.fan = planFanout(t, nil, n)
		e.fan.Store(e.os.fan)
		e.os.fanSpec = e.os.fan.spec(t)
	}
	steer, err := xdpSteer(e.os.fanSpec, n)
	if err != nil {
		return err
	}
	x.filter, x.steer = filter, steer
	_, largeCfg, _ := socketConfigs(nil, nil)
	macs := make([][6]byte, len(e.ifaces))
	x.ports = make([][]*xskPort, n)
	var sockets []string
	slot := 0 // the largest frame a hand-off ring slot must hold
	for pi, ifc := range e.ifaces {
		macs[pi] = ifc.MAC
		queues := rxQueues(ifc.Name)
		sockets = append(sockets, fmt.Sprintf("%s: %d", ifc.Name, queues))
		prog, err := xsk.AttachFilter(ifc.Name, x.mode, queues, nil)
		if err != nil {
			return errorf("%v; %s", err, attachHint(err, ifc.Name, x.mode))
		}
		x.progs = append(x.progs, prog)
		if err := prog.SetFilterSteer(filter, steer); err != nil {
			return errorf("XDP program on %s: %w", ifc.Name, err)
		}
		x.socks = append(x.socks, nil)
		frameSize, err := xskFrameSize(ifc.Name)
		if err != nil {
			return err
		}
		slot = max(slot, frameSize-256)
		x.maxMTU = append(x.maxMTU, frameSize-256-xskFrameOverhead)
		for q := range queues {
			c := xsk.Config{Interface: ifc.Name, Queue: q, FrameSize: frameSize, TxBudget: xskTxBudget, TxBudgetOptional: true}
			if q >= n {
				// A worker transmits through its first queue's socket only. (A budget larger than
				// the TX ring is refused: EACCES.)
				c.TxFrames, c.TxBudget = 64, 0
			}
			s, err := xsk.Open(c)
			if err != nil {
				return errorf("AF_XDP socket on %s queue %d: %w (set io = \"afpacket\" if the kernel lacks AF_XDP)", ifc.Name, q, err)
			}
			x.socks[pi] = append(x.socks[pi], s)
			if err := prog.Register(q, s); err != nil {
				return errorf("%w", err)
			}
			if q < n {
				x.ports[q] = append(x.ports[q], &xskPort{s: s})
			}
		}
	}
	for wi := range n {
		if err := e.addWorker(wi, n, asXSKPorts(x.ports[wi]), macs, largeCfg); err != nil {
			return err
		}
	}
	if err := e.linkFragments(); err != nil {
		return err
	}
	fds := e.os.wakefds
	for wi, w := range e.workers {
		if w.sync != nil {
			fd := fds[wi]
			w.sync.wake = func() { wakeFD(fd) }
		}
		w.fr.wake = xdpWake(x.asleep, fds)
	}
	if size := handoffRings(e.workers, slot); size > 0 {
		e.cfg.logf("data plane: hand-off rings between the %d workers take %d MiB", n, size>>20)
	}
	// Before any goroutine starts: a failure here leaves nothing running.
	auto, err := e.startIRQDefer()
	if err != nil {
		return err
	}
	e.tables.Store(t)
	cpus := allowedCPUs()
	for wi, w := range e.workers {
		e.os.wg.Add(1)
		go e.routineXDPWorker(w, wi, cpus[wi%len(cpus)])
	}
	if n > 1 {
		e.os.wg.Add(1)
		go e.routineFanout()
	}
	if auto {
		e.os.wg.Add(1)
		go e.routineIRQDefer(x.irq)
	}
	e.cfg.logf("data plane: %d worker(s) on %v, CPUs %v, io afxdp (XDP in %s mode; AF_XDP sockets, one per receive queue: %s)", n, e.cfg.Interfaces, cpus[:min(n, len(cpus))], x.mode, strings.Join(sockets, ", "))
	return nil
}

// xdpWake returns how a worker wakes worker to after handing it frames or fragments: through its
// eventfd (fds[to]), only if it may sleep (asleep[to], set by routineXDPWorker before its last
// look at its rings): under load the others are awake, and a write per round would cost a system
// call each.
func xdpWake(asleep []atomic.Bool, fds []int) func(to int) {
	return func(to int) {
		if asleep[to].Load() {
			wakeFD(fds[to])
		}
	}
}

func asXSKPorts(ps []*xskPort) []Transmitter {
	ts := make([]Transmitter, len(ps))
	for i, p := range ps {
		ts[i] = p
	}
	return ts
}

// The hand-off rings to one AF_XDP worker hold together about what a NIC's receive ring holds:
// a burst that arrives while the worker is off its CPU (a bulk TCP transfer in the lab lost
// frames to a ring of 1024). Memory grows with the workers, not with their square: each worker's
// rings from the n-1 others share handoffFrames slots (at least handoffSlotsMin each).
const (
	handoffFrames   = 4096
	handoffSlotsMin = 64
)

// handoffRings gives every worker a ring to every other worker, of slots of slot bytes, which its
// sockets hand frames over by (routineXDPWorker), and returns the bytes they take. With one
// worker there is nothing to hand off.
func handoffRings(ws []*Worker, slot int) int {
	n := len(ws)
	if n <= 1 {
		return 0
	}
	slots := max(handoffFrames/(n-1), handoffSlotsMin)
	for _, w := range ws {
		w.handOut = make([]*handoffRing, n)
	}
	for _, from := range ws {
		for _, to := range ws {
			if from != to {
				r := newHandoffRing(slots, slot)
				from.handOut[to.id] = r
				to.handIn = append(to.handIn, &handoffRx{r: r})
			}
		}
	}
	return n * (n - 1) * slots * slot
}

// attachHint tells the operator what to do about err, a failure to attach the XDP program to ifname.
func attachHint(err error, ifname string, mode xsk.Mode) string {
	switch {
	case errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST):
		return fmt.Sprintf("another XDP program is attached to %s (see `ip link show %s`): detach it, or set io = \"afpacket\"", ifname, ifname)
	case mode == xsk.ModeDriver && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)):
		return fmt.Sprintf("the driver of %s may lack native XDP: set xdp_mode = \"generic\", or io = \"afpacket\"", ifname)
	case mode == xsk.ModeDriver && errors.Is(err, unix.ENOSPC):
		// veth: fewer receive queues than the peer has transmit queues; a NIC: too few queues
		// left for XDP's transmit queues.
		return fmt.Sprintf("the driver of %s has too few queues for XDP: a veth needs as many receive queues as its peer has transmit queues (ethtool -L PEER tx N, or rx N on %s); a NIC may need fewer combined queues (ethtool -L %s combined N); or set io = \"afpacket\"", ifname, ifname, ifname)
	case mode == xsk.ModeDriver && errors.Is(err, unix.ERANGE):
		return fmt.Sprintf("the MTU of %s (or, on a veth, of its peer) is too large for native XDP: lower it, or set io = \"afpacket\"", ifname)
	}
	return "set io = \"afpacket\" if this kernel or driver cannot run XDP"
}

// setXDPFilter installs t's filter, standing by or not, for this host's addresses locals, in
// every interface's XDP program, with the steering program in force.
func (e *Engine) setXDPFilter(t *Tables, standby bool, locals []netip.Addr) error {
	filter, err := xdpFilter(t, standby, locals)
	if err != nil {
		return err
	}
	if err := e.setXDPPrograms(filter, e.os.xdp.steer); err != nil {
		return err
	}
	e.os.xdp.notTo = locals
	return nil
}

// programXDP is program for io = "afxdp": t's filter, and with several workers the steering
// program of plan (built from spec), in every interface's XDP program at once.
func (eo *engineOS) programXDP(e *Engine, t *Tables, plan *fanoutPlan, spec bpfgen.FanoutSpec) error {
	locals := localAddrs()
	filter, err := xdpFilter(t, eo.standby, locals)
	if err != nil {
		return err
	}
	steer := eo.xdp.steer
	if plan != nil {
		if steer, err = xdpSteer(spec, len(e.workers)); err != nil {
			return err
		}
	}
	if err := e.setXDPPrograms(filter, steer); err != nil {
		return err
	}
	eo.xdp.notTo = locals
	if plan != nil {
		plan.report(t, eo.fan, e.cfg.logf)
		eo.fan, eo.fanSpec = plan, spec
		e.fan.Store(plan)
	}
	return nil
}

// setXDPPrograms installs filter and steer in every interface's XDP program. When one interface
// refuses them, the interfaces already changed get the programs in force back, so that all of
// them keep taking and steering the same frames.
//
// An interface deleted while govs runs takes its program's link with it (ENOLINK: "link has been
// severed"): it is logged once and left out from then on, so that the other interfaces keep
// taking new tables.
func (e *Engine) setXDPPrograms(filter, steer []bpf.Instruction) error {
	x := e.os.xdp
	if x.gone == nil {
		x.gone = make([]bool, len(x.progs))
	}
	for i, p := range x.progs {
		if x.gone[i] {
			continue
		}
		err := p.SetFilterSteer(filter, steer)
		if errors.Is(err, unix.ENOLINK) {
			x.gone[i] = true
			e.cfg.warnf("interface %s is gone (its XDP program went with it): govs goes on with the other interfaces; restart govs once it is back", e.ifaces[i].Name)
			continue
		}
		if err != nil {
			for j, done := range x.progs[:i] {
				if x.gone[j] {
					continue
				}
				if rerr := done.SetFilterSteer(x.filter, x.steer); rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
			return errorf("XDP program on %s: %w (the interfaces keep the programs in force)", e.ifaces[i].Name, err)
		}
	}
	x.filter, x.steer = filter, steer
	return nil
}

// routineXDPWorker is routineWorker for io = "afxdp": worker wi reads its queues' sockets of
// every interface and the frames other workers handed to it, flushes once per round and sleeps
// in poll(2) when idle.
func (e *Engine) routineXDPWorker(w *Worker, wi int, cpu int) {
	defer e.os.wg.Done()
	runtime.LockOSThread()
	e.pinWorker(w, cpu)
	x := e.os.xdp
	n := len(x.ports)
	type rxPort struct {
		in   int
		port *xskPort
	}
	var rx []rxPort
	var fds []unix.PollFd
	for pi, socks := range x.socks {
		for q, s := range socks {
			if q%n != wi {
				continue
			}
			p := x.ports[wi][pi]
			if s != p.s {
				p = &xskPort{s: s}
			}
			if n > 1 {
				p.steer = &steerOut{w: w, in: pi, out: w.handOut}
			}
			rx = append(rx, rxPort{pi, p})
			fds = append(fds, unix.PollFd{Fd: int32(s.Fd()), Events: unix.POLLIN})
		}
	}
	fds = append(fds, unix.PollFd{Fd: int32(e.os.wakefd), Events: unix.POLLIN})
	fds = append(fds, unix.PollFd{Fd: int32(e.os.wakefds[wi]), Events: unix.POLLIN}) // last: see sleepWorker
	var round roundState
	for {
		if t := e.tables.Load(); t != w.tables {
			w.SetTables(t)
		}
		now := int64(time.Since(e.epoch))
		w.now = now
		w.drainSync()
		// Fragments other workers handed over were counted as read by them (ring_packets): they
		// keep this worker busy but are not counted again.
		drained := w.DrainFragments(now)
		got := w.receiveHandedOff(w.handIn, now)
		passed := drained // frames read here for other workers (handed on, or dropped for a full ring), and fragments
		for _, r := range rx {
			got += w.Receive(r.in, r.port, now)
			if o := r.port.steer; o != nil {
				passed += o.handed + o.full
				round.packets += uint64(o.full) // read, and never received by another worker
				if o.handed > 0 {
					w.wakePeers() // at once: a ring fills within a round
				}
				o.read, o.handed, o.full = 0, 0, 0
			}
		}
		if passed > 0 {
			round.lastBusy = now // work as well: look on, as after own frames
		}
		// As on the latency ring, keep looking for a while after the last frame instead of
		// sleeping: a sleeping worker costs a wake-up (and the CPU that received the frame an
		// IPI) every few frames under load, more than the frames themselves.
		spinning, stop := e.endRound(w, wi, &round, got, now, true)
		if stop {
			return
		}
		if got == 0 && !spinning {
			// Say so before the last look at the rings: a worker that hands frames over after
			// this sees it and wakes this one (sync/atomic is sequentially consistent).
			x.asleep[wi].Store(true)
			if !handedOffPending(w.handIn) && !w.fragmentsPending() {
				e.sleepWorker(w, fds, pollTimeout)
			}
			x.asleep[wi].Store(false)
		}
	}
}

// closeXDP detaches the XDP programs and closes the AF_XDP sockets.
func (eo *engineOS) closeXDP() error {
	x := eo.xdp
	if x == nil {
		return nil
	}
	var errs []error
	if x.irq != nil {
		errs = append(errs, x.irq.restore())
	}
	for _, p := range x.progs {
		errs = append(errs, p.Close())
	}
	for _, socks := range x.socks {
		for _, s := range socks {
			errs = append(errs, s.Close())
		}
	}
	eo.xdp = nil
	return errors.Join(errs...)
}

// xdpStats sums the AF_XDP sockets' counters as AF_PACKET's statistics: Drops are frames the
// kernel dropped for a full RX ring, or for other reasons (an empty fill ring among them);
// Packets, as PACKET_STATISTICS counts them, the frames the worker read and those drops.
func (eo *engineOS) xdpStats() afpacket.Stats {
	var sum afpacket.Stats
	if eo.xdp == nil {
		return sum
	}
	for _, socks := range eo.xdp.socks {
		for _, s := range socks {
			if st, err := s.Stats(); err == nil {
				sum.Drops += st.RxRingFull + st.RxDropped
			}
		}
	}
	sum.Packets = eo.rx.total() + sum.Drops
	return sum
}
