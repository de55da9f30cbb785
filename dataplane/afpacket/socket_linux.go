//go:build linux

package afpacket

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Socket is an AF_PACKET socket bound to one interface with a TPACKETv3 RX ring and a TX ring.
//
// A Socket belongs to one goroutine (the worker): NextBatch, TxFrame, TxCommit, Flush, SetFilter,
// SetFanoutProg, Stats and Close must not be called concurrently. The worker waits for frames by
// polling Fd() together with whatever else it waits on (the engine's stop eventfd); Close runs once
// the worker has stopped and uses no frame any more, since it unmaps the rings.
type Socket struct {
	fd      int
	closed  bool
	ifindex int
	vnet    bool
	geo     geometry
	ring    []byte // one mapping: RX blocks, then TX blocks

	rx  rxRing
	frx frameRxRing // instead of rx with Config.FrameRing
	tx  txRing

	stats Stats // accumulated, since reading PACKET_STATISTICS resets the kernel's counters
}

// Open creates the socket, sets up both rings in one mapping and binds to cfg.Interface, in
// the order packet(7) requires: version, vnet header, filter, rings, mmap, options, bind, fanout.
// Zero sizes in cfg are derived from the interface MTU: an RX block holds one maximal frame
// (4 KiB for MTU 1500; 128 KiB with VnetHdr, where 64 KiB GSO frames arrive whole), each
// ring is about 4 MiB. Small blocks matter: a block reaches user space when it is full or
// when BlockTimeout fires, so under load small blocks keep latency low.
func Open(cfg Config) (*Socket, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to create AF_PACKET socket (needs CAP_NET_RAW): %w", os.NewSyscallError("socket", err))
	}
	s := &Socket{fd: fd, vnet: cfg.VnetHdr}
	if err := s.open(cfg); err != nil {
		s.release()
		return nil, fmt.Errorf("failed to open AF_PACKET rings on %q: %w", cfg.Interface, err)
	}
	return s, nil
}

func (s *Socket) open(cfg Config) error {
	idx, mtu, err := ifaceInfo(s.fd, cfg.Interface)
	if err != nil {
		return err
	}
	s.ifindex = idx
	geo, err := newGeometry(cfg, mtu, os.Getpagesize())
	if err != nil {
		return err
	}
	s.geo = geo

	version := unix.TPACKET_V3
	if geo.frameRing {
		version = unix.TPACKET_V2
	}
	if err := setInt(s.fd, unix.PACKET_VERSION, version); err != nil {
		return err
	}
	if cfg.VnetHdr {
		if err := setInt(s.fd, unix.PACKET_VNET_HDR, 1); err != nil {
			return err
		}
	}
	// A malformed TX frame would otherwise stay in the ring as TP_STATUS_WRONG_FORMAT and
	// stall it for good; with PACKET_LOSS the kernel skips and frees it.
	if err := setInt(s.fd, unix.PACKET_LOSS, 1); err != nil {
		return err
	}
	if cfg.Filter != nil {
		if err := attachFilter(s.fd, cfg.Filter); err != nil {
			return err
		}
	}
	if err := s.setupRings(cfg, geo); err != nil {
		return err
	}

	if cfg.QdiscBypass {
		if err := setInt(s.fd, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return err
		}
	}
	// Without this our own transmissions come back into the RX ring.
	if err := setInt(s.fd, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return err
	}
	// A small send buffer stalls the TX ring: every in-flight frame is charged to it.
	if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, max(8<<20, 2*geo.txBytes())); err != nil {
		return fmt.Errorf("failed to set the send buffer: %w", os.NewSyscallError("setsockopt SO_SNDBUFFORCE", err))
	}
	if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		return fmt.Errorf("failed to set the receive buffer: %w", os.NewSyscallError("setsockopt SO_RCVBUFFORCE", err))
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: s.ifindex}
	if cfg.SendOnly {
		// Protocol 0 hooks the socket into no receive path; the kernel reads each TX frame's
		// protocol from its Ethernet header (packet_parse_headers).
		sa.Protocol = 0
	}
	if err := unix.Bind(s.fd, sa); err != nil {
		return fmt.Errorf("failed to bind to ifindex %d: %w", s.ifindex, os.NewSyscallError("bind", err))
	}
	if cfg.FanoutGroup != 0 {
		typ := unix.PACKET_FANOUT_HASH
		if cfg.FanoutProg != nil {
			typ = unix.PACKET_FANOUT_CBPF
		}
		// The group's hook replaces the socket's own, so PACKET_IGNORE_OUTGOING above does
		// not apply to it: the group needs its own flag.
		arg := int(cfg.FanoutGroup) | (typ|unix.PACKET_FANOUT_FLAG_IGNORE_OUTGOING)<<16
		if err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_FANOUT, arg); err != nil {
			return fmt.Errorf("failed to join fanout group %d (members must agree on type and flags): %w", cfg.FanoutGroup, os.NewSyscallError("setsockopt PACKET_FANOUT", err))
		}
		if cfg.FanoutProg != nil {
			if err := s.SetFanoutProg(cfg.FanoutProg); err != nil {
				return err
			}
		}
	}
	return nil
}

// setupRings creates the RX ring (and, for TPACKETv3, the TX ring) and maps them.
func (s *Socket) setupRings(cfg Config, geo geometry) error {
	if geo.frameRing {
		req := unix.TpacketReq{
			Block_size: uint32(geo.rxBlockSize),
			Block_nr:   uint32(geo.rxBlocks),
			Frame_size: uint32(geo.rxFrameSize),
			Frame_nr:   uint32(geo.rxFrames),
		}
		if err := unix.SetsockoptTpacketReq(s.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return fmt.Errorf("failed to set up TPACKET_V2 RX ring (%d frames of %d bytes): %w", geo.rxFrames, geo.rxFrameSize, os.NewSyscallError("setsockopt PACKET_RX_RING", err))
		}
		ring, err := unix.Mmap(s.fd, 0, geo.rxBytes(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("failed to map RX ring (%d bytes): %w", geo.rxBytes(), os.NewSyscallError("mmap", err))
		}
		s.ring = ring
		s.frx.init(ring, geo, cfg.VnetHdr)
		s.frx.fd = s.fd
		if err := setInt(s.fd, unix.PACKET_COPY_THRESH, 1); err != nil {
			return err
		}
		return nil
	}
	if geo.rxBlocks > 0 { // none on a send-only socket
		rxReq := unix.TpacketReq3{
			Block_size:     uint32(geo.rxBlockSize),
			Block_nr:       uint32(geo.rxBlocks),
			Frame_size:     uint32(geo.rxBlockSize), // unused by TPACKETv3 RX, but checked
			Frame_nr:       uint32(geo.rxBlocks),
			Retire_blk_tov: geo.rxTimeoutMS,
		}
		if err := unix.SetsockoptTpacketReq3(s.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &rxReq); err != nil {
			return fmt.Errorf("failed to set up RX ring (%d blocks of %d bytes): %w", geo.rxBlocks, geo.rxBlockSize, os.NewSyscallError("setsockopt PACKET_RX_RING", err))
		}
	}
	// The TX ring takes a tpacket_req3 too; the kernel rejects the retire timer and
	// private area on it.
	txReq := unix.TpacketReq3{
		Block_size: uint32(geo.txBlockSize),
		Block_nr:   uint32(geo.txBlocks),
		Frame_size: uint32(geo.txFrameSize),
		Frame_nr:   uint32(geo.txFrames),
	}
	if err := unix.SetsockoptTpacketReq3(s.fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &txReq); err != nil {
		return fmt.Errorf("failed to set up TX ring (%d frames of %d bytes): %w", geo.txFrames, geo.txFrameSize, os.NewSyscallError("setsockopt PACKET_TX_RING", err))
	}
	ring, err := unix.Mmap(s.fd, 0, geo.rxBytes()+geo.txBytes(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("failed to map rings (%d bytes): %w", geo.rxBytes()+geo.txBytes(), os.NewSyscallError("mmap", err))
	}
	s.ring = ring
	if geo.rxBlocks > 0 {
		s.rx.init(ring[:geo.rxBytes()], geo.rxBlockSize, geo.rxBlocks, cfg.VnetHdr)
	}
	s.tx.init(ring[geo.rxBytes():], geo, cfg.VnetHdr)
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func setInt(fd, opt, v int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, opt, v); err != nil {
		return fmt.Errorf("failed to set %s: %w", packetOptName(opt), os.NewSyscallError("setsockopt", err))
	}
	return nil
}

func packetOptName(opt int) string {
	switch opt {
	case unix.PACKET_VERSION:
		return "PACKET_VERSION"
	case unix.PACKET_VNET_HDR:
		return "PACKET_VNET_HDR"
	case unix.PACKET_LOSS:
		return "PACKET_LOSS"
	case unix.PACKET_QDISC_BYPASS:
		return "PACKET_QDISC_BYPASS"
	case unix.PACKET_IGNORE_OUTGOING:
		return "PACKET_IGNORE_OUTGOING"
	}
	return fmt.Sprintf("packet option %d", opt)
}

func toSockFprog(prog []bpf.RawInstruction) *unix.SockFprog {
	f := make([]unix.SockFilter, len(prog)+1) // +1 keeps &f[0] valid for an empty program
	for i, ins := range prog {
		f[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return &unix.SockFprog{Len: uint16(len(prog)), Filter: &f[0]}
}

func attachFilter(fd int, prog []bpf.RawInstruction) error {
	if len(prog) == 0 || len(prog) > maxBPFInsns {
		return fmt.Errorf("invalid socket filter: %d instructions, use 1 to %d", len(prog), maxBPFInsns)
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, toSockFprog(prog)); err != nil {
		return fmt.Errorf("failed to attach the socket filter (check the program with bpf.Disassemble): %w", os.NewSyscallError("setsockopt SO_ATTACH_FILTER", err))
	}
	return nil
}

// Fd returns the socket's descriptor for poll(2): POLLIN means an RX block is ready.
func (s *Socket) Fd() int { return s.fd }

// NextBatch fills fs with the next received frames, at most len(fs), and returns how many. On a
// TPACKETv3 ring they come from one block, so every frame of the batch stays valid (in the ring,
// not copied) until the next call to NextBatch; the data plane reads a batch first and
// processes it after, so that the connection-table misses of the batch overlap. A TPACKET_V2 ring
// (the latency ring) hands out one frame per call. Blocks and slots go back to the kernel as
// NextBatch moves past them. Never blocks.
func (s *Socket) NextBatch(fs []Frame) int {
	if len(fs) == 0 {
		return 0
	}
	if s.geo.frameRing {
		f, m, ok := s.frx.next()
		if !ok {
			return 0
		}
		fs[0] = Frame{Data: f, Meta: *m}
		return 1
	}
	return s.rx.nextBatch(fs)
}

// RxIdle reports whether the RX ring holds nothing for user space now or later: no frame or
// block is ready and (TPACKETv3) the block the kernel is filling is empty, so no retire is
// pending. Use it once the socket can receive nothing more (its fanout group sends elsewhere)
// to know that every frame it got has been read. Frames of a block NextBatch has opened count as
// not idle until NextBatch has returned them all.
func (s *Socket) RxIdle() bool {
	if s.geo.frameRing {
		return s.frx.idle()
	}
	return s.rx.idle()
}

// TxFrame returns the data area of the next free TX slot (len = largest frame that fits) or
// nil when the ring is full. Write the frame into it, then call TxCommit.
func (s *Socket) TxFrame() []byte { return s.tx.frame() }

// TxSend copies frame into the next free TX slot and queues it as TxCommit does with vnet; it
// reports false, queueing nothing, when the ring is full or the frame does not fit a slot. It is
// TxFrame, copy and TxCommit in one call, for the data plane's common frame.
func (s *Socket) TxSend(frame []byte, vnet VnetHdr) bool {
	buf := s.tx.frame()
	if len(buf) < len(frame) || len(frame) == 0 {
		s.tx.handed = false
		return false
	}
	copy(buf, frame)
	s.tx.commit(len(frame), vnet)
	return true
}

// TxCommit marks the slot returned by TxFrame as ready to send with its first n bytes. With
// VnetHdr, vnet goes in front of the frame; the zero VnetHdr means no offload and is sent as
// HdrLen = n so that the kernel builds one linear skb (cheaper on veth). Without VnetHdr,
// vnet is ignored. A commit without a preceding TxFrame, or with n out of range, is dropped.
func (s *Socket) TxCommit(n int, vnet VnetHdr) { s.tx.commit(n, vnet) }

// Flush kicks the kernel (one sendto) for every committed frame and returns how many frames
// the kernel took. A kick can stop part-way (the device or the send buffer refused a frame:
// ENOBUFS/EAGAIN); the remaining frames stay queued and go with the next Flush, so that
// is not an error. Never blocks.
func (s *Socket) Flush() (int, error) { return s.tx.flush(s.fd) }

// SetFilter replaces the socket filter, e.g. on reload. The swap is atomic in the kernel.
func (s *Socket) SetFilter(prog []bpf.RawInstruction) error {
	if err := attachFilter(s.fd, prog); err != nil {
		return fmt.Errorf("failed to replace the filter on ifindex %d: %w", s.ifindex, err)
	}
	return nil
}

// SetFanoutProg replaces the PACKET_FANOUT_CBPF program of the socket's fanout group (which
// was joined with a FanoutProg). The program returns the member index; the kernel takes it
// modulo the number of members.
func (s *Socket) SetFanoutProg(prog []bpf.RawInstruction) error {
	if len(prog) == 0 || len(prog) > maxBPFInsns {
		return fmt.Errorf("invalid fanout program: %d instructions, use 1 to %d", len(prog), maxBPFInsns)
	}
	if err := unix.SetsockoptSockFprog(s.fd, unix.SOL_PACKET, unix.PACKET_FANOUT_DATA, toSockFprog(prog)); err != nil {
		return fmt.Errorf("failed to set the fanout program (the group must be of type CBPF): %w", os.NewSyscallError("setsockopt PACKET_FANOUT_DATA", err))
	}
	return nil
}

// Stats returns the PACKET_STATISTICS counters accumulated since Open.
func (s *Socket) Stats() (Stats, error) {
	st, err := unix.GetsockoptTpacketStatsV3(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return s.stats, fmt.Errorf("failed to read packet statistics: %w", os.NewSyscallError("getsockopt PACKET_STATISTICS", err))
	}
	s.stats.Packets += uint64(st.Packets)
	s.stats.Drops += uint64(st.Drops)
	s.stats.Freezes += uint64(st.Freeze_q_cnt)
	return s.stats, nil
}

// Close unmaps the rings and closes the socket. It is safe to call more than once; see Socket for
// when it may be called.
func (s *Socket) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.release()
}

func (s *Socket) release() error {
	var errs []error
	if s.ring != nil {
		s.rx = rxRing{}
		s.frx = frameRxRing{}
		s.tx = txRing{}
		if err := unix.Munmap(s.ring); err != nil {
			errs = append(errs, fmt.Errorf("failed to unmap rings: %w", os.NewSyscallError("munmap", err)))
		}
		s.ring = nil
	}
	if err := unix.Close(s.fd); err != nil {
		errs = append(errs, fmt.Errorf("failed to close AF_PACKET socket: %w", os.NewSyscallError("close", err)))
	}
	return errors.Join(errs...)
}
