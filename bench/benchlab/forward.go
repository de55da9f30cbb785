package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/xsk"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The forward subcommand (`benchlab forward ...`, which the fwd-* phases start in the balancer
// namespace) is a minimal forwarder: it receives frames on one interface, does the least a NAT
// balancer must do to each (pick a real server from the source port, rewrite both MACs and the
// destination address, fix both checksums incrementally) and sends them out of the other, with
// one of two I/O paths:
//
//   - afpacket: govs's own TPACKETv3 rings (package dataplane/afpacket) with govs's socket
//     options (PACKET_VNET_HDR, PACKET_QDISC_BYPASS, the 2 KiB TX slots), receive on one
//     socket, transmit on a socket with a reject-all filter on the other interface.
//   - afxdp: AF_XDP (package dataplane/xsk): an XDP program redirects the input's frames to an
//     XSK, transmit through a transmit-only XSK on the other interface, both in copy mode.
//
// Both read a batch in place, write each frame into a transmit slot, kick once a batch and
// sleep in poll(2) when nothing arrives, so they differ only in the kernel path.

// fwdOptions are the forwarder's command line.
type fwdOptions struct {
	io, in, out string
	xdpMode     string
	txBudget    int
	servers     string // ip=mac,ip=mac...
	maxRun      time.Duration
	busyPoll    int
}

// fwdCounters is what the forwarder prints as one JSON line when it ends.
type fwdCounters struct {
	Received  uint64     `json:"received"`
	Sent      uint64     `json:"sent"`
	Malformed uint64     `json:"malformed"`
	TxFull    uint64     `json:"tx_full"`
	Kicks     uint64     `json:"kicks"`
	Polls     uint64     `json:"polls"`
	XSK       *xsk.Stats `json:"xsk,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// fwdReady is the line the forwarder prints once it forwards.
const fwdReady = "forward: ready"

func runForward(args []string) int {
	var o fwdOptions
	fs := flag.NewFlagSet("benchlab forward", flag.ContinueOnError)
	fs.StringVar(&o.io, "io", "afxdp", "afpacket or afxdp")
	fs.StringVar(&o.in, "in", "l0", "interface frames arrive on")
	fs.StringVar(&o.out, "out", "l1", "interface frames leave by")
	fs.StringVar(&o.xdpMode, "xdp-mode", "driver", "afxdp: where the XDP program runs: driver (native) or generic (skb)")
	fs.IntVar(&o.txBudget, "tx-budget", 0, "afxdp: frames one kick sends (XDP_MAX_TX_SKB_BUDGET; 0: the kernel's 32)")
	fs.IntVar(&o.busyPoll, "busy-poll", 0, "afxdp: busy-poll the input's NAPI from the forwarder for this many microseconds when its RX ring is empty (0: off)")
	fs.StringVar(&o.servers, "servers", "", "real servers: ip=mac,... (required)")
	fs.DurationVar(&o.maxRun, "max-run", 10*time.Minute, "exit after this long even without SIGTERM")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	n, err := newFwdNAT(o.out, o.servers)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchlab forward:", err)
		return 2
	}
	var stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; stop.Store(true) }()
	time.AfterFunc(o.maxRun, func() { stop.Store(true) })

	var c fwdCounters
	switch o.io {
	case "afpacket":
		err = forwardAFPacket(o, n, &stop, &c)
	case "afxdp":
		err = forwardXSK(o, n, &stop, &c)
	default:
		err = fmt.Errorf("-io %q: want afpacket or afxdp", o.io)
	}
	if err != nil {
		c.Error = err.Error()
	}
	_ = json.NewEncoder(os.Stdout).Encode(&c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchlab forward:", err)
		return 1
	}
	return 0
}

// fwdNAT is the per-frame work: a real server per source port, its MAC and address.
type fwdNAT struct {
	src  [6]byte
	macs [][6]byte
	ips  [][4]byte
}

func newFwdNAT(out, servers string) (*fwdNAT, error) {
	ifc, err := net.InterfaceByName(out)
	if err != nil {
		return nil, err
	}
	n := &fwdNAT{}
	copy(n.src[:], ifc.HardwareAddr)
	for _, s := range strings.Split(servers, ",") {
		ip, macStr, ok := strings.Cut(s, "=")
		a, err := netip.ParseAddr(ip)
		if !ok || err != nil || !a.Is4() {
			return nil, fmt.Errorf("-servers: %q is not ipv4=mac", s)
		}
		mac, err := net.ParseMAC(macStr)
		if err != nil || len(mac) != 6 {
			return nil, fmt.Errorf("-servers: %q: bad MAC", s)
		}
		n.ips = append(n.ips, a.As4())
		n.macs = append(n.macs, [6]byte(mac))
	}
	return n, nil
}

// rewrite writes frame f, NATed, into out and returns its length, 0 when f is not an IPv4 UDP
// frame without options (or does not fit).
func (n *fwdNAT) rewrite(out, f []byte) int {
	if len(f) < 42 || len(f) > len(out) || f[12] != 0x08 || f[13] != 0 || f[14] != 0x45 || f[23] != unix.IPPROTO_UDP {
		return 0
	}
	copy(out, f)
	i := int(binary.BigEndian.Uint16(f[34:])) % len(n.ips)
	copy(out[0:6], n.macs[i][:])
	copy(out[6:12], n.src[:])
	old := [4]byte(out[30:34])
	copy(out[30:34], n.ips[i][:])
	binary.BigEndian.PutUint16(out[24:], csumReplace4(binary.BigEndian.Uint16(out[24:]), old, n.ips[i]))
	if c := binary.BigEndian.Uint16(out[40:]); c != 0 {
		c = csumReplace4(c, old, n.ips[i])
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(out[40:], c)
	}
	return len(f)
}

// csumReplace4 updates the Internet checksum c for a 4-byte field changing from old to new
// (RFC 1624).
func csumReplace4(c uint16, old, new [4]byte) uint16 {
	s := uint32(^c)
	s += uint32(^binary.BigEndian.Uint16(old[0:])) + uint32(^binary.BigEndian.Uint16(old[2:]))
	s += uint32(binary.BigEndian.Uint16(new[0:])) + uint32(binary.BigEndian.Uint16(new[2:]))
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return ^uint16(s)
}

const fwdBatch = 64

// fwdPoll sleeps until fd is readable or 50 ms have passed.
func fwdPoll(fd int, c *fwdCounters) {
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	c.Polls++
	_, _ = unix.Poll(pfd[:], 50)
}

// fwdRx and fwdTx are the two I/O paths' rings as the forwarding loop uses them.
type fwdRx interface {
	batch(fs [][]byte) int // frames in place, valid until release
	release()
	fd() int
	poke() // busy-poll the device once, if the path does that
}

type fwdTx interface {
	TxFrame() []byte
	commit(n int) // n = 0: the frame is not sent
	Flush() (int, error)
}

type afpacketRx struct {
	s      *afpacket.Socket
	frames []afpacket.Frame
}

func (r *afpacketRx) batch(fs [][]byte) int {
	n := r.s.NextBatch(r.frames[:len(fs)])
	for i := range n {
		fs[i] = r.frames[i].Data
	}
	return n
}
func (r *afpacketRx) release() {} // NextBatch gives the block back
func (r *afpacketRx) fd() int  { return r.s.Fd() }
func (r *afpacketRx) poke()    {}

type afpacketTx struct{ *afpacket.Socket }

func (t afpacketTx) commit(n int) {
	if n > 0 {
		t.TxCommit(n, afpacket.VnetHdr{}) // else the slot stays free
	}
}

type xskRx struct {
	*xsk.Socket
	busy bool
}

func (r xskRx) batch(fs [][]byte) int { return r.RxBatch(fs) }
func (r xskRx) release()              { r.RxRelease() }
func (r xskRx) fd() int               { return r.Fd() }
func (r xskRx) poke() {
	if r.busy {
		r.Poke()
	}
}

type xskTx struct{ *xsk.Socket }

func (t xskTx) commit(n int) { t.TxCommit(n) } // 0 gives the frame back

// fwdLoop forwards until stop: a batch in place, each frame rewritten into a transmit slot, one
// flush a batch, poll(2) when nothing came.
func fwdLoop(rx fwdRx, tx fwdTx, n *fwdNAT, stop *atomic.Bool, c *fwdCounters) error {
	fmt.Println(fwdReady)
	frames := make([][]byte, fwdBatch)
	for !stop.Load() {
		k := rx.batch(frames)
		if k == 0 {
			rx.poke()
			k = rx.batch(frames)
		}
		if k == 0 {
			if _, err := tx.Flush(); err != nil {
				return err
			}
			fwdPoll(rx.fd(), c)
			continue
		}
		c.Received += uint64(k)
		for _, f := range frames[:k] {
			out := tx.TxFrame()
			if out == nil {
				c.Kicks++
				if _, err := tx.Flush(); err != nil {
					return err
				}
				if out = tx.TxFrame(); out == nil {
					c.TxFull++
					continue
				}
			}
			l := n.rewrite(out, f)
			if l == 0 {
				c.Malformed++
			} else {
				c.Sent++
			}
			tx.commit(l)
		}
		rx.release()
		c.Kicks++
		if _, err := tx.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func forwardAFPacket(o fwdOptions, n *fwdNAT, stop *atomic.Bool, c *fwdCounters) error {
	// The receive socket has a TX ring too (afpacket always makes one); it stays unused.
	rx, err := afpacket.Open(afpacket.Config{Interface: o.in, VnetHdr: true, QdiscBypass: true, TxFrames: 64})
	if err != nil {
		return err
	}
	defer rx.Close()
	// Transmit as govs does: 2 KiB slots, a socket that receives nothing (reject-all filter).
	rejectAll := []bpf.RawInstruction{{Op: 0x06, K: 0}}
	tx, err := afpacket.Open(afpacket.Config{Interface: o.out, Filter: rejectAll, VnetHdr: true, QdiscBypass: true,
		NumBlocks: 1, TxFrameSize: 2048, TxFrames: 2048})
	if err != nil {
		return err
	}
	defer tx.Close()
	return fwdLoop(&afpacketRx{s: rx, frames: make([]afpacket.Frame, fwdBatch)}, afpacketTx{tx}, n, stop, c)
}

// soIncomingNAPIID is Linux's SO_INCOMING_NAPI_ID (golang.org/x/sys/unix defines it for Linux
// only, and benchlab builds elsewhere for go vet).
const soIncomingNAPIID = 56

func forwardXSK(o fwdOptions, n *fwdNAT, stop *atomic.Bool, c *fwdCounters) error {
	mode := xsk.ModeDriver
	switch o.xdpMode {
	case "driver":
	case "generic":
		mode = xsk.ModeGeneric
	default:
		return fmt.Errorf("-xdp-mode %q: want driver or generic", o.xdpMode)
	}
	prog, err := xsk.Attach(o.in, mode, 1)
	if err != nil {
		return err
	}
	defer prog.Close()
	rx, err := xsk.Open(xsk.Config{Interface: o.in, TxFrames: 64, BusyPoll: o.busyPoll})
	if err != nil {
		return err
	}
	defer rx.Close()
	if err := prog.Register(0, rx); err != nil {
		return err
	}
	tx, err := xsk.Open(xsk.Config{Interface: o.out, NoRx: true, TxBudget: o.txBudget})
	if err != nil {
		return err
	}
	defer tx.Close()
	if err := fwdLoop(xskRx{rx, o.busyPoll > 0}, xskTx{tx}, n, stop, c); err != nil {
		return err
	}
	if o.busyPoll > 0 {
		// A socket busy-polls the NAPI whose id it learnt from its received frames; veth's NAPI
		// has none on some kernels (6.18 among them), and then Poke does nothing.
		if id, err := unix.GetsockoptInt(rx.Fd(), unix.SOL_SOCKET, soIncomingNAPIID); err == nil && id == 0 {
			fmt.Fprintf(os.Stderr, "benchlab forward: -busy-poll: the socket on %s learnt no NAPI id, so it never busy-polled (only the NAPI deferral took effect)\n", o.in)
		}
	}
	st, err := rx.Stats()
	if err != nil {
		return err
	}
	c.XSK = &st
	return nil
}
