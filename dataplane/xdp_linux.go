//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
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
// One worker owns every queue's socket: AF_XDP receives per queue, and the NIC's RSS does not
// keep a NAT connection's two directions on one queue, as the AF_PACKET fanout program does
// across workers. Frames govs transmits leave through the socket of queue 0 of the outgoing
// interface; frames larger than a UMEM frame (GSO frames from local senders, which only generic
// mode can see) leave through the send-only AF_PACKET socket with large slots.

// Packet I/O, [dataplane] io.
const (
	IOAFPacket = "afpacket"
	IOAFXDP    = "afxdp"
)

// XDP modes, [dataplane] xdp_mode.
const (
	XDPModeDriver  = "driver"
	XDPModeGeneric = "generic"
)

// xdpState is the engine's AF_XDP side (nil with AF_PACKET).
type xdpState struct {
	mode   xsk.Mode
	progs  []*xsk.Program    // per interface
	socks  [][]*xsk.Socket   // [interface][queue]
	ports  []*xskPort        // per interface: queue 0's socket, the worker's transmit port
	filter []bpf.Instruction // the programs' filter now (nil: every frame to the kernel)
	notTo  []netip.Addr      // this host's addresses filter leaves to the kernel (see xdpFilter)
}

// xskPort is one AF_XDP socket as a worker's Receiver and Transmitter.
type xskPort struct {
	s    *xsk.Socket
	bufs [MaxBatch][]byte
}

// NextBatch hands out the next received frames; they stay in the UMEM until the next call,
// which gives them back to the kernel's fill ring first.
func (p *xskPort) NextBatch(fs []afpacket.Frame) int {
	n := p.s.RxBatch(p.bufs[:min(len(fs), len(p.bufs))])
	for i := range n {
		fs[i] = afpacket.Frame{Data: p.bufs[i], Meta: afpacket.RxMeta{Len: uint32(len(p.bufs[i])), Status: statusCsumUnknown}}
	}
	return n
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
// or the kernel drops it. Room is kept for two VLAN tags.
func xskFrameSize(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, errorf("interface %q: %w", name, err)
	}
	need := ifi.MTU + 14 + 8
	for _, size := range []int{2048, 4096} {
		if need <= size-256 {
			return size, nil
		}
	}
	return 0, errorf("interface %s has MTU %d; with io = \"afxdp\" govs takes frames up to an MTU of %d: lower the MTU, or set io = \"afpacket\"", name, ifi.MTU, 4096-256-22)
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
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		return nil, errorf("socket filter: does not disassemble")
	}
	return insns, nil
}

// startXDP is start for io = "afxdp": n must be 1 (see the comment at the top).
func (e *Engine) startXDP(t *Tables, n int) error {
	if n != 1 {
		return errorf("io = \"afxdp\" runs one worker; set [dataplane] workers = 1 (or 0), or io = \"afpacket\" for %d workers", n)
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return errorf("eventfd: %w", err)
	}
	e.os.wakefd = fd
	e.os.stopping = make(chan struct{})
	e.os.initRX(RXModeThroughput, n)
	e.startGuard(t)
	x := &xdpState{mode: xsk.ModeDriver}
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
	x.filter = filter
	_, largeCfg, _ := socketConfigs(nil, nil)
	macs := make([][6]byte, len(e.ifaces))
	ports := make([]Transmitter, len(e.ifaces))
	var sockets []string
	for pi, ifc := range e.ifaces {
		macs[pi] = ifc.MAC
		queues := rxQueues(ifc.Name)
		sockets = append(sockets, fmt.Sprintf("%s: %d", ifc.Name, queues))
		prog, err := xsk.AttachFilter(ifc.Name, x.mode, queues, filter)
		if err != nil {
			return errorf("%v; %s", err, attachHint(err, ifc.Name, x.mode))
		}
		x.progs = append(x.progs, prog)
		x.socks = append(x.socks, nil)
		frameSize, err := xskFrameSize(ifc.Name)
		if err != nil {
			return err
		}
		for q := range queues {
			c := xsk.Config{Interface: ifc.Name, Queue: q, FrameSize: frameSize, TxBudget: xskTxBudget, TxBudgetOptional: true}
			if q > 0 {
				// The worker transmits through queue 0's socket only. (A budget larger than the TX
				// ring is refused: EACCES.)
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
		}
		p := &xskPort{s: x.socks[pi][0]}
		x.ports = append(x.ports, p)
		ports[pi] = p
	}
	if err := e.openPorts(&e.os.large, 0, " (large frames)", largeCfg); err != nil {
		return err
	}
	w, err := NewWorker(0, ports, macs, e.cfg.Conntrack)
	if err != nil {
		return errorf("worker 0: connection table: %w", err)
	}
	w.SetLargePorts(asPorts(e.os.large[0]))
	w.SetWorkers(1)
	w.hosts = &e.os.hosts
	if e.cfg.Sync {
		w.EnableSync()
		w.sync.snapEvery = 1e9 / snapshotRate
	}
	e.workers = append(e.workers, w)
	if err := e.linkFragments(); err != nil {
		return err
	}
	if w.sync != nil {
		fd := e.os.wakefds[0]
		w.sync.wake = func() { wakeFD(fd) }
	}
	e.tables.Store(t)
	cpus := allowedCPUs()
	e.os.wg.Add(1)
	go e.routineXDPWorker(w, cpus[0])
	e.cfg.logf("data plane: 1 worker on %v, CPU %d, io afxdp (XDP in %s mode; AF_XDP sockets, one a receive queue: %s)", e.cfg.Interfaces, cpus[0], x.mode, strings.Join(sockets, ", "))
	return nil
}

// attachHint tells the operator what to do about err, a failure to attach the XDP program to ifname.
func attachHint(err error, ifname string, mode xsk.Mode) string {
	switch {
	case errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST):
		return fmt.Sprintf("another XDP program is attached to %s (see `ip link show %s`): detach it, or set io = \"afpacket\"", ifname, ifname)
	case mode == xsk.ModeDriver && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)):
		return fmt.Sprintf("the driver of %s may lack native XDP: set xdp_mode = \"generic\", or io = \"afpacket\"", ifname)
	}
	return "set io = \"afpacket\" if this kernel or driver cannot run XDP"
}

// setXDPFilter installs t's filter, standing by or not, for this host's addresses locals, in
// every interface's XDP program. When one interface refuses it, the interfaces already changed
// get the filter in force back, so that all of them keep taking the same frames.
func (e *Engine) setXDPFilter(t *Tables, standby bool, locals []netip.Addr) error {
	x := e.os.xdp
	filter, err := xdpFilter(t, standby, locals)
	if err != nil {
		return err
	}
	for i, p := range x.progs {
		if err := p.SetFilter(filter); err != nil {
			for _, done := range x.progs[:i] {
				if rerr := done.SetFilter(x.filter); rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
			return errorf("XDP program on %s: %w (the interfaces keep the filter in force)", e.ifaces[i].Name, err)
		}
	}
	x.filter, x.notTo = filter, locals
	return nil
}

// routineXDPWorker is routineWorker for io = "afxdp": one worker reads every queue's socket of
// every interface, flushes once per round and sleeps in poll(2) when idle.
func (e *Engine) routineXDPWorker(w *Worker, cpu int) {
	defer e.os.wg.Done()
	runtime.LockOSThread()
	e.pinWorker(w, cpu)
	x := e.os.xdp
	type rxPort struct {
		in   int
		port *xskPort
	}
	var rx []rxPort
	var fds []unix.PollFd
	for pi, socks := range x.socks {
		for _, s := range socks {
			p := x.ports[pi]
			if s != p.s {
				p = &xskPort{s: s}
			}
			rx = append(rx, rxPort{pi, p})
			fds = append(fds, unix.PollFd{Fd: int32(s.Fd()), Events: unix.POLLIN})
		}
	}
	fds = append(fds, unix.PollFd{Fd: int32(e.os.wakefd), Events: unix.POLLIN})
	fds = append(fds, unix.PollFd{Fd: int32(e.os.wakefds[0]), Events: unix.POLLIN}) // last: see sleepWorker
	var round roundState
	for {
		if t := e.tables.Load(); t != w.tables {
			w.SetTables(t)
		}
		now := int64(time.Since(e.epoch))
		w.now = now
		w.drainSync()
		got := w.DrainFragments(now)
		for _, r := range rx {
			got += w.Receive(r.in, r.port, now)
		}
		// As on the latency ring, keep looking for a while after the last frame instead of
		// sleeping: a sleeping worker costs a wake-up (and the CPU that received the frame an
		// IPI) every few frames under load, more than the frames themselves.
		spinning, stop := e.endRound(w, 0, &round, got, now, true)
		if stop {
			return
		}
		if got == 0 && !spinning {
			e.sleepWorker(w, fds, pollTimeout)
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
	sum.Packets = eo.rx.packets[0].Load() + sum.Drops
	return sum
}
