//go:build linux

package afpacket

// This file holds the ring walks; it is one of the two files of the package that use unsafe
// (the other is ioctl_linux.go). The ring is shared memory written by the kernel: ownership
// of an RX block or a TX frame moves with its status word, which is read and written with
// atomics (the kernel pairs them with smp_rmb/smp_wmb and flush_dcache_page).

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets inside struct tpacket_block_desc (version, offset_to_priv, then tpacket_hdr_v1).
const (
	bdBlockStatus = 8
	bdNumPkts     = 12
	bdFirstPkt    = 16
	bdSeqNum      = 24 // u64, the kernel numbers blocks 1, 2, ... as it opens them
)

// rxRing walks TPACKETv3 RX blocks in order (the kernel fills them round-robin).
type rxRing struct {
	ring      []byte
	blockSize int
	nblocks   int
	vnet      bool

	cur  int  // block we read, or wait for
	held bool // cur belongs to user space and is being read
	left uint32
	off  int    // offset of the next packet header within the held block
	seq  uint64 // seq_num of the last block handed back (0: none yet)

	meta RxMeta
}

func (r *rxRing) init(ring []byte, blockSize, nblocks int, vnet bool) {
	*r = rxRing{ring: ring, blockSize: blockSize, nblocks: nblocks, vnet: vnet}
}

func (r *rxRing) blockStatus(b int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.ring[b*r.blockSize+bdBlockStatus]))
}

func (r *rxRing) release() {
	r.seq = binary.NativeEndian.Uint64(r.ring[r.cur*r.blockSize+bdSeqNum:])
	atomic.StoreUint32(r.blockStatus(r.cur), unix.TP_STATUS_KERNEL)
	r.held = false
	r.left = 0
	if r.cur++; r.cur == r.nblocks {
		r.cur = 0
	}
}

func (r *rxRing) next() ([]byte, *RxMeta, bool) {
	if r.ring == nil {
		return nil, nil, false
	}
	// Bounded: finish the held block, then open at most two more (a retired block is never
	// empty in practice, but an empty one is simply handed back).
	for range 3 {
		if r.held && r.left > 0 {
			if f, ok := r.packet(); ok {
				return f, &r.meta, true
			}
			r.left = 0 // a header we cannot trust: give the rest of the block back
		}
		if r.held {
			r.release()
		}
		base := r.cur * r.blockSize
		if atomic.LoadUint32(r.blockStatus(r.cur))&unix.TP_STATUS_USER == 0 {
			return nil, nil, false
		}
		r.held = true
		r.left = binary.NativeEndian.Uint32(r.ring[base+bdNumPkts:])
		r.off = int(binary.NativeEndian.Uint32(r.ring[base+bdFirstPkt:]))
	}
	return nil, nil, false
}

// nextBatch is next for up to len(fs) frames of one block (see Socket.NextBatch).
func (r *rxRing) nextBatch(fs []Frame) int {
	f, m, ok := r.next()
	if !ok {
		return 0
	}
	fs[0] = Frame{Data: f, Meta: *m}
	n := 1
	for n < len(fs) && r.left > 0 {
		f, ok := r.packet()
		if !ok {
			r.left = 0 // a header we cannot trust: the next call gives the rest of the block back
			break
		}
		fs[n] = Frame{Data: f, Meta: r.meta}
		n++
	}
	return n
}

// idle reports whether no frame is waiting: none left in a held block, no retired block, and
// the kernel's open block (the one after the last we handed back, recognised by its sequence
// number, since a block not reopened yet still shows its old count) holds no frame.
func (r *rxRing) idle() bool {
	if r.ring == nil {
		return true
	}
	if r.held && r.left > 0 {
		return false
	}
	b := r.cur
	if r.held {
		if b++; b == r.nblocks {
			b = 0
		}
	}
	st := atomic.LoadUint32(r.blockStatus(b))
	if st&unix.TP_STATUS_USER != 0 {
		return false
	}
	base := b * r.blockSize
	seq := binary.NativeEndian.Uint64(r.ring[base+bdSeqNum:])
	want := r.seq + 1
	if r.held {
		want = binary.NativeEndian.Uint64(r.ring[r.cur*r.blockSize+bdSeqNum:]) + 1
	}
	return seq != want || atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.ring[base+bdNumPkts]))) == 0
}

// frameRxRing walks a TPACKET_V2 RX ring: fixed slots, each with its own status word, filled
// by the kernel in order.
type frameRxRing struct {
	ring      []byte
	frameSize int
	blockSize int
	perBlock  int
	nframes   int
	vnet      bool

	cur  int  // slot we read, or wait for
	held bool // cur was returned by next and is handed back on the following call

	meta RxMeta

	// fd and big receive frames larger than a slot: the kernel marks their slot TP_STATUS_COPY
	// and queues the whole frame on the socket (PACKET_COPY_THRESH), in slot order.
	fd  int
	big []byte
}

func (r *frameRxRing) init(ring []byte, g geometry, vnet bool) {
	*r = frameRxRing{
		ring: ring, frameSize: g.rxFrameSize, blockSize: g.rxBlockSize,
		perBlock: g.rxBlockSize / g.rxFrameSize, nframes: g.rxFrames, vnet: vnet,
	}
}

func (r *frameRxRing) slot(i int) []byte {
	o := (i/r.perBlock)*r.blockSize + (i%r.perBlock)*r.frameSize
	return r.ring[o : o+r.frameSize : o+r.frameSize]
}

func (r *frameRxRing) status(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.slot(i)[0]))
}

func (r *frameRxRing) release() {
	atomic.StoreUint32(r.status(r.cur), unix.TP_STATUS_KERNEL)
	r.held = false
	if r.cur++; r.cur == r.nframes {
		r.cur = 0
	}
}

func (r *frameRxRing) idle() bool {
	if r.ring == nil {
		return true
	}
	c := r.cur
	if r.held {
		if c++; c == r.nframes {
			c = 0
		}
	}
	return atomic.LoadUint32(r.status(c))&unix.TP_STATUS_USER == 0
}

func (r *frameRxRing) next() ([]byte, *RxMeta, bool) {
	if r.ring == nil {
		return nil, nil, false
	}
	// Bounded: a slot with a header we cannot trust is handed back and the next one tried.
	for range 2 {
		if r.held {
			r.release()
		}
		if atomic.LoadUint32(r.status(r.cur))&unix.TP_STATUS_USER == 0 {
			return nil, nil, false
		}
		r.held = true
		if f, ok := r.frame(); ok {
			return f, &r.meta, true
		}
	}
	return nil, nil, false
}

// frame decodes the tpacket2_hdr of the held slot; offsets are checked against the slot.
func (r *frameRxRing) frame() ([]byte, bool) {
	s := r.slot(r.cur)
	h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&s[0]))
	if h.Status&unix.TP_STATUS_COPY != 0 {
		if f, ok := r.copied(s, h); ok {
			return f, true
		}
		// The copy could not be read: hand on the truncated frame (its Len says so).
	}
	mac := int(h.Mac)
	end := mac + int(h.Snaplen)
	if mac < tpacket2HdrLen || end > len(s) {
		return nil, false
	}
	r.meta = RxMeta{
		Status:   h.Status,
		Len:      h.Len,
		VLANTCI:  h.Vlan_tci,
		VLANTPID: h.Vlan_tpid,
	}
	if r.vnet && mac >= tpacket2HdrLen+VnetHdrLen {
		v := s[mac-VnetHdrLen : mac]
		r.meta.Vnet = decodeVnet(v)
	}
	return s[mac:end:end], true
}

// copied reads the whole frame the kernel queued on the socket for the held slot (TP_STATUS_COPY).
// It is the next frame in the socket's queue: the kernel queues one per such slot, in order.
func (r *frameRxRing) copied(s []byte, h *unix.Tpacket2Hdr) ([]byte, bool) {
	if r.big == nil {
		r.big = make([]byte, VnetHdrLen+maxGSOFrame+4096)
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(r.fd), uintptr(unsafe.Pointer(&r.big[0])),
		uintptr(len(r.big)), unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
	if errno != 0 || int(n) > len(r.big) {
		return nil, false
	}
	b := r.big[:n]
	r.meta = RxMeta{
		Status:   h.Status,
		VLANTCI:  h.Vlan_tci,
		VLANTPID: h.Vlan_tpid,
	}
	if r.vnet {
		if len(b) < VnetHdrLen {
			return nil, false
		}
		r.meta.Vnet = decodeVnet(b)
		b = b[VnetHdrLen:]
	}
	r.meta.Len = uint32(len(b))
	return b, true
}

// packet decodes the tpacket3_hdr at r.off and advances. Every offset is checked against
// the block, so a corrupt header cannot make us read outside it.
func (r *rxRing) packet() ([]byte, bool) {
	block := r.ring[r.cur*r.blockSize : (r.cur+1)*r.blockSize]
	off := r.off
	// The kernel aligns packets to 8 (V3_ALIGNMENT); an unaligned offset is corrupt.
	if off < blockDescLen || off > len(block)-tpacket3HdrLen-sockaddrLLLen || off%8 != 0 {
		return nil, false
	}
	h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&block[off]))
	mac := int(h.Mac)
	end := mac + int(h.Snaplen)
	if mac < tpacket3HdrLen+sockaddrLLLen || end > len(block)-off {
		return nil, false
	}
	r.meta = RxMeta{
		Status:   h.Status,
		Len:      h.Len,
		VLANTCI:  uint16(h.Hv1.Vlan_tci),
		VLANTPID: h.Hv1.Vlan_tpid,
	}
	if r.vnet && mac >= tpacket3HdrLen+sockaddrLLLen+VnetHdrLen {
		v := block[off+mac-VnetHdrLen : off+mac]
		r.meta.Vnet = decodeVnet(v)
	}
	r.left--
	if h.Next_offset != 0 {
		r.off = off + int(h.Next_offset)
	} else {
		r.left = 0
	}
	return block[off+mac : off+end : off+end], true
}

// txRing hands out fixed-size TX frames in ring order. Slots move
// AVAILABLE -(commit)-> SEND_REQUEST -(sendto)-> SENDING -(skb freed)-> AVAILABLE.
type txRing struct {
	ring      []byte
	frameSize int
	blockSize int
	perBlock  int
	nframes   int
	vnet      bool
	dataOff   int // offset of the frame in a slot (after the vnet header)
	head      int // next slot to hand out
	handed    bool
	kick      int // oldest committed slot the kernel has not taken yet
	queued    int // committed slots not yet taken
}

func (t *txRing) init(ring []byte, g geometry, vnet bool) {
	*t = txRing{
		ring: ring, frameSize: g.txFrameSize, blockSize: g.txBlockSize,
		perBlock: g.txBlockSize / g.txFrameSize, nframes: g.txFrames, vnet: vnet,
		dataOff: txDataOff,
	}
	if vnet {
		t.dataOff += VnetHdrLen
	}
}

func (t *txRing) slot(i int) []byte {
	o := (i/t.perBlock)*t.blockSize + (i%t.perBlock)*t.frameSize
	return t.ring[o : o+t.frameSize : o+t.frameSize]
}

func (t *txRing) hdr(i int) *unix.Tpacket3Hdr {
	return (*unix.Tpacket3Hdr)(unsafe.Pointer(&t.slot(i)[0]))
}

func (t *txRing) frame() []byte {
	if t.ring == nil || t.queued == t.nframes {
		return nil
	}
	if atomic.LoadUint32(&t.hdr(t.head).Status) != unix.TP_STATUS_AVAILABLE {
		return nil // still in flight: the kernel frees slots in order
	}
	t.handed = true
	return t.slot(t.head)[t.dataOff:]
}

func (t *txRing) commit(n int, v VnetHdr) {
	if !t.handed || n <= 0 || n > t.frameSize-t.dataOff {
		t.handed = false
		return
	}
	t.handed = false
	s := t.slot(t.head)
	h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&s[0]))
	l := n
	if t.vnet {
		if v == (VnetHdr{}) {
			v.HdrLen = uint16(min(n, 0xffff)) // linear skb; see TxCommit
		}
		b := s[txDataOff : txDataOff+VnetHdrLen]
		b[0], b[1] = v.Flags, v.GSOType
		binary.NativeEndian.PutUint16(b[2:], v.HdrLen)
		binary.NativeEndian.PutUint16(b[4:], v.GSOSize)
		binary.NativeEndian.PutUint16(b[6:], v.CsumStart)
		binary.NativeEndian.PutUint16(b[8:], v.CsumOffset)
		l += VnetHdrLen
	}
	h.Len = uint32(l)
	h.Snaplen = uint32(l)
	h.Next_offset = 0 // the kernel rejects anything else on a TPACKETv3 TX ring
	atomic.StoreUint32(&h.Status, unix.TP_STATUS_SEND_REQUEST)
	if t.head++; t.head == t.nframes {
		t.head = 0
	}
	t.queued++
}

func (t *txRing) flush(fd int) (int, error) {
	if t.queued == 0 {
		return 0, nil
	}
	// Raw syscall: no sockaddr conversion, and an Errno is not boxed, so no allocation.
	_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	sent := 0
	for t.queued > 0 && atomic.LoadUint32(&t.hdr(t.kick).Status) != unix.TP_STATUS_SEND_REQUEST {
		sent++
		t.queued--
		if t.kick++; t.kick == t.nframes {
			t.kick = 0
		}
	}
	switch errno {
	case 0, unix.ENOBUFS, unix.EAGAIN, unix.EINTR:
		return sent, nil
	}
	return sent, &kickError{errno: errno}
}

// kickError is a failed TX kick; it wraps the errno without allocating in the common case
// (the caller sees it only for unexpected errors).
type kickError struct{ errno unix.Errno }

func (e *kickError) Error() string {
	return "failed to send TX ring frames: sendto: " + e.errno.Error()
}
func (e *kickError) Unwrap() error { return e.errno }

// decodeVnet reads a struct virtio_net_hdr (host byte order, as packet sockets write it) from the
// first VnetHdrLen bytes of b.
func decodeVnet(b []byte) VnetHdr {
	return VnetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.NativeEndian.Uint16(b[2:]),
		GSOSize:    binary.NativeEndian.Uint16(b[4:]),
		CsumStart:  binary.NativeEndian.Uint16(b[6:]),
		CsumOffset: binary.NativeEndian.Uint16(b[8:]),
	}
}
