package xsk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket is an AF_XDP socket with its own UMEM, bound to one queue of one interface.
//
// A Socket belongs to one goroutine (the worker): RxBatch, RxRelease, TxFrame, TxCommit, Flush,
// Stats and Close must not be called concurrently. The worker waits for frames by polling Fd()
// (POLLIN: the RX ring holds frames). Close unmaps the UMEM: call it once no frame is used any
// more.
type Socket struct {
	fd        int
	umem      []byte
	frameSize uint64
	fill      addrRing // user space produces free receive frames
	comp      addrRing // kernel produces sent transmit frames
	rx        descRing // kernel produces received frames
	tx        descRing // user space produces frames to send
	maps      [][]byte // every ring mapping, for Close

	rxHeld  uint32   // RX descriptors RxBatch handed out, not yet released
	txFree  []uint64 // free transmit frames (UMEM offsets)
	txCur   uint64   // the frame TxFrame returned, noFrame when none
	txShown uint32   // tx.prod as last published to the kernel
}

const noFrame = ^uint64(0)

// ring is the part of an XSK ring shared by all four: producer and consumer indices in the
// mapping, and the side this process owns cached.
type ring struct {
	prod, cons *uint32
	flags      *uint32
	mask       uint32
	cached     uint32 // our index: prod for fill and TX, cons for RX and completion
}

type addrRing struct {
	ring
	addrs []uint64
}

type descRing struct {
	ring
	descs []unix.XDPDesc
}

// Open creates the socket and its UMEM, sets up the rings, fills the fill ring with every
// receive frame and binds to cfg.Interface's cfg.Queue in copy mode (or zero-copy with
// cfg.ZeroCopy) with XDP_USE_NEED_WAKEUP. Frames reach the RX ring once a Program on the
// interface redirects them to the socket (Program.Register).
func Open(cfg Config) (*Socket, error) {
	s := &Socket{fd: -1, txCur: noFrame}
	if err := s.open(cfg); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("xsk: %s queue %d: %w", cfg.Interface, cfg.Queue, err)
	}
	return s, nil
}

func (s *Socket) open(cfg Config) error {
	frameSize, rxFrames, txFrames := cfg.FrameSize, cfg.RxFrames, cfg.TxFrames
	if frameSize == 0 {
		frameSize = defaultFrameSize
	}
	if rxFrames == 0 {
		rxFrames = defaultFrames
	}
	if txFrames == 0 {
		txFrames = defaultFrames
	}
	if frameSize != 2048 && frameSize != 4096 {
		return fmt.Errorf("frame size %d: want 2048 or 4096", frameSize)
	}
	if !isPow2(rxFrames) || !isPow2(txFrames) || rxFrames > 1<<16 || txFrames > 1<<16 {
		return fmt.Errorf("%d receive and %d transmit frames: want powers of two up to 65536", rxFrames, txFrames)
	}
	if cfg.NoRx {
		rxFrames = 0
	}
	ifc, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return err
	}
	s.fd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket(AF_XDP): %w (a kernel without CONFIG_XDP_SOCKETS?)", err)
	}
	s.frameSize = uint64(frameSize)
	total := rxFrames + txFrames
	s.umem, err = unix.Mmap(-1, 0, total*frameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap UMEM (%d bytes): %w", total*frameSize, err)
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&s.umem[0]))), Len: uint64(len(s.umem)), Size: uint32(frameSize)}
	if err := setsockopt(s.fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return fmt.Errorf("XDP_UMEM_REG: %w", err)
	}
	// The kernel wants a fill and a completion ring on every UMEM, even one that only sends.
	fillSize := max(rxFrames, 64)
	for _, o := range []struct {
		opt, n int
		name   string
	}{
		{unix.XDP_UMEM_FILL_RING, fillSize, "XDP_UMEM_FILL_RING"},
		{unix.XDP_UMEM_COMPLETION_RING, txFrames, "XDP_UMEM_COMPLETION_RING"},
		{unix.XDP_TX_RING, txFrames, "XDP_TX_RING"},
		{unix.XDP_RX_RING, rxFrames, "XDP_RX_RING"},
	} {
		if o.n == 0 {
			continue
		}
		if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, o.opt, o.n); err != nil {
			return fmt.Errorf("%s %d: %w", o.name, o.n, err)
		}
	}
	var off unix.XDPMmapOffsets
	offLen := uint32(unsafe.Sizeof(off))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&offLen)), 0); e != 0 {
		return fmt.Errorf("XDP_MMAP_OFFSETS: %w", e)
	}
	if err := s.mapAddrRing(&s.fill, off.Fr, unix.XDP_UMEM_PGOFF_FILL_RING, fillSize); err != nil {
		return fmt.Errorf("mmap fill ring: %w", err)
	}
	if err := s.mapAddrRing(&s.comp, off.Cr, unix.XDP_UMEM_PGOFF_COMPLETION_RING, txFrames); err != nil {
		return fmt.Errorf("mmap completion ring: %w", err)
	}
	if err := s.mapDescRing(&s.tx, off.Tx, unix.XDP_PGOFF_TX_RING, txFrames); err != nil {
		return fmt.Errorf("mmap TX ring: %w", err)
	}
	if rxFrames > 0 {
		if err := s.mapDescRing(&s.rx, off.Rx, unix.XDP_PGOFF_RX_RING, rxFrames); err != nil {
			return fmt.Errorf("mmap RX ring: %w", err)
		}
	}
	// Receive frames first in the UMEM, all of them in the fill ring; transmit frames after.
	for i := 0; i < rxFrames; i++ {
		s.fill.addrs[uint32(i)&s.fill.mask] = uint64(i) * s.frameSize
	}
	s.fill.cached = uint32(rxFrames)
	atomic.StoreUint32(s.fill.prod, s.fill.cached)
	s.txFree = make([]uint64, 0, txFrames)
	for i := total - 1; i >= rxFrames; i-- {
		s.txFree = append(s.txFree, uint64(i)*s.frameSize)
	}
	if cfg.TxBudget > 0 {
		err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, cfg.TxBudget)
		switch {
		case errors.Is(err, unix.ENOPROTOOPT) && cfg.TxBudgetOptional:
			// A kernel before 6.17: each kick sends its default 32 frames.
		case err != nil:
			return fmt.Errorf("XDP_MAX_TX_SKB_BUDGET %d (kernel older than 6.17?): %w", cfg.TxBudget, err)
		}
	}
	if cfg.BusyPoll > 0 {
		for _, o := range []struct{ opt, v int }{{unix.SO_PREFER_BUSY_POLL, 1}, {unix.SO_BUSY_POLL, cfg.BusyPoll}, {unix.SO_BUSY_POLL_BUDGET, 64}} {
			if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, o.opt, o.v); err != nil {
				return fmt.Errorf("busy polling (socket option %#x): %w", o.opt, err)
			}
		}
	}
	flags := uint16(unix.XDP_USE_NEED_WAKEUP | unix.XDP_COPY)
	if cfg.ZeroCopy {
		flags = unix.XDP_USE_NEED_WAKEUP | unix.XDP_ZEROCOPY
	}
	sa := &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(ifc.Index), QueueID: uint32(cfg.Queue)}
	err = unix.Bind(s.fd, sa)
	// A socket closed a moment ago (a restarted process's) holds the queue until the kernel's
	// deferred release has run: EBUSY for a few milliseconds.
	for try := 0; errors.Is(err, unix.EBUSY) && try < 100; try++ {
		time.Sleep(20 * time.Millisecond)
		err = unix.Bind(s.fd, sa)
	}
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("bind: %w: another AF_XDP socket is bound to this queue", err)
		}
		if cfg.ZeroCopy && errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("bind: %w: the driver has no AF_XDP zero-copy mode, use copy mode", err)
		}
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

func setsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), n, 0); e != 0 {
		return e
	}
	return nil
}

// mapRing maps one ring of n entries of entrySize bytes and fills r's pointers.
func (s *Socket) mapRing(r *ring, off unix.XDPRingOffset, pgoff int64, n int, entrySize uintptr) (unsafe.Pointer, error) {
	m, err := unix.Mmap(s.fd, pgoff, int(off.Desc)+n*int(entrySize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, err
	}
	s.maps = append(s.maps, m)
	base := unsafe.Pointer(&m[0])
	r.prod = (*uint32)(unsafe.Add(base, off.Producer))
	r.cons = (*uint32)(unsafe.Add(base, off.Consumer))
	r.flags = (*uint32)(unsafe.Add(base, off.Flags))
	r.mask = uint32(n - 1)
	return unsafe.Add(base, off.Desc), nil
}

func (s *Socket) mapAddrRing(r *addrRing, off unix.XDPRingOffset, pgoff int64, n int) error {
	p, err := s.mapRing(&r.ring, off, pgoff, n, 8)
	if err == nil {
		r.addrs = unsafe.Slice((*uint64)(p), n)
	}
	return err
}

func (s *Socket) mapDescRing(r *descRing, off unix.XDPRingOffset, pgoff int64, n int) error {
	p, err := s.mapRing(&r.ring, off, pgoff, n, unsafe.Sizeof(unix.XDPDesc{}))
	if err == nil {
		r.descs = unsafe.Slice((*unix.XDPDesc)(p), n)
	}
	return err
}

// Fd returns the socket's descriptor for poll(2): POLLIN means the RX ring holds frames.
func (s *Socket) Fd() int { return s.fd }

// RxBatch fills fs with the next received frames, at most len(fs), and returns how many. The
// frames stay in the UMEM, valid until RxRelease or the next RxBatch (which releases the
// previous batch first). Never blocks.
func (s *Socket) RxBatch(fs [][]byte) int {
	if s.rx.descs == nil {
		return 0
	}
	s.RxRelease()
	avail := atomic.LoadUint32(s.rx.prod) - s.rx.cached
	n := min(avail, uint32(len(fs)))
	for i := uint32(0); i < n; i++ {
		d := &s.rx.descs[(s.rx.cached+i)&s.rx.mask]
		fs[i] = s.umem[d.Addr : d.Addr+uint64(d.Len) : d.Addr+uint64(d.Len)]
	}
	s.rxHeld = n
	return int(n)
}

// RxBatchSteer is RxBatch for a socket whose XDP program steers (Program.SetFilterSteer): it
// takes the word the program put in front of each frame off the frame and reports in to[i] the
// member the steering program chose for frame i, or -1 for a frame without the word (whole).
func (s *Socket) RxBatchSteer(fs [][]byte, to []int32) int {
	n := s.RxBatch(fs[:min(len(fs), len(to))])
	for i := range n {
		to[i] = -1
		if b := fs[i]; len(b) >= 4 {
			if v := binary.NativeEndian.Uint32(b); v&0xffff0000 == SteerMark {
				to[i], fs[i] = int32(v&0xffff), b[4:]
			}
		}
	}
	return n
}

// RxRelease gives the frames of the last RxBatch back to the kernel (the fill ring).
func (s *Socket) RxRelease() {
	n := s.rxHeld
	if n == 0 {
		return
	}
	for i := uint32(0); i < n; i++ {
		d := &s.rx.descs[(s.rx.cached+i)&s.rx.mask]
		s.fill.addrs[(s.fill.cached+i)&s.fill.mask] = d.Addr &^ (s.frameSize - 1)
	}
	s.fill.cached += n
	atomic.StoreUint32(s.fill.prod, s.fill.cached)
	s.rx.cached += n
	atomic.StoreUint32(s.rx.cons, s.rx.cached)
	s.rxHeld = 0
	if atomic.LoadUint32(s.fill.flags)&unix.XDP_RING_NEED_WAKEUP != 0 {
		s.Poke() // the driver waits for a wake-up to take new fill entries (zero-copy drivers)
	}
}

// Poke makes the kernel look for received frames now: with BusyPoll (and a NAPI id, see
// Config.BusyPoll) it runs the device's receive NAPI in this thread; in zero-copy mode it wakes
// the driver. Never blocks.
func (s *Socket) Poke() {
	_, _, _ = unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// reclaim moves sent frames from the completion ring back to the free list.
func (s *Socket) reclaim() {
	avail := atomic.LoadUint32(s.comp.prod) - s.comp.cached
	for i := uint32(0); i < avail; i++ {
		s.txFree = append(s.txFree, s.comp.addrs[(s.comp.cached+i)&s.comp.mask]&^(s.frameSize-1))
	}
	s.comp.cached += avail
	atomic.StoreUint32(s.comp.cons, s.comp.cached)
}

// TxFrame returns a free transmit frame (len = the frame size) or nil when every frame is
// queued or in flight. Write the frame into it, then call TxCommit.
func (s *Socket) TxFrame() []byte {
	if s.txCur == noFrame {
		if len(s.txFree) == 0 {
			s.reclaim()
			if len(s.txFree) == 0 {
				return nil
			}
		}
		s.txCur = s.txFree[len(s.txFree)-1]
		s.txFree = s.txFree[:len(s.txFree)-1]
	}
	return s.umem[s.txCur : s.txCur+s.frameSize : s.txCur+s.frameSize]
}

// TxCommit queues the frame TxFrame returned with its first n bytes; Flush sends it. A commit
// without a preceding TxFrame, or with n out of range, is dropped.
func (s *Socket) TxCommit(n int) {
	if s.txCur == noFrame {
		return
	}
	if n <= 0 || uint64(n) > s.frameSize {
		s.txFree = append(s.txFree, s.txCur)
		s.txCur = noFrame
		return
	}
	// A free frame guarantees a free TX slot: the ring has as many slots as there are frames.
	s.tx.descs[s.tx.cached&s.tx.mask] = unix.XDPDesc{Addr: s.txCur, Len: uint32(n)}
	s.tx.cached++
	s.txCur = noFrame
}

// Flush publishes the committed frames and, when the kernel asks for it (always in copy mode),
// kicks it with sendto(2) until it has taken them all or refuses more for now. It returns how
// many frames the kernel took from the TX ring. Never blocks.
func (s *Socket) Flush() (int, error) {
	if s.tx.cached != s.txShown {
		atomic.StoreUint32(s.tx.prod, s.tx.cached)
		s.txShown = s.tx.cached
	}
	before := atomic.LoadUint32(s.tx.cons)
	cons := before
	for cons != s.tx.cached && atomic.LoadUint32(s.tx.flags)&unix.XDP_RING_NEED_WAKEUP != 0 {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		now := atomic.LoadUint32(s.tx.cons)
		progressed := now != cons
		cons = now
		switch e {
		case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS:
			// In copy mode one kick sends at most the TX budget (32 by default): EAGAIN then
			// means "more left"; without progress the device refuses frames for now.
			if !progressed {
				return int(cons - before), nil
			}
		default:
			return int(cons - before), fmt.Errorf("xsk: sendto: %w", e)
		}
	}
	return int(cons - before), nil
}

// Stats returns the kernel's XDP_STATISTICS.
func (s *Socket) Stats() (Stats, error) {
	var st unix.XDPStatistics
	n := uint32(unsafe.Sizeof(st))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_STATISTICS, uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&n)), 0); e != 0 {
		return Stats{}, fmt.Errorf("xsk: XDP_STATISTICS: %w", e)
	}
	return Stats{
		RxDropped: st.Rx_dropped, RxInvalid: st.Rx_invalid_descs, TxInvalid: st.Tx_invalid_descs,
		RxRingFull: st.Rx_ring_full, RxFillRingEmpty: st.Rx_fill_ring_empty_descs, TxRingEmptyDescs: st.Tx_ring_empty_descs,
	}, nil
}

// Close closes the socket (which unbinds it and removes it from any XSKMAP) and unmaps the
// rings and the UMEM.
func (s *Socket) Close() error {
	var errs []error
	if s.fd >= 0 {
		errs = append(errs, unix.Close(s.fd))
		s.fd = -1
	}
	for _, m := range s.maps {
		errs = append(errs, unix.Munmap(m))
	}
	s.maps = nil
	if s.umem != nil {
		errs = append(errs, unix.Munmap(s.umem))
		s.umem = nil
	}
	return errors.Join(errs...)
}
