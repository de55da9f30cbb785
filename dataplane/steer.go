package dataplane

import "github.com/govs/govs/dataplane/afpacket"

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

// Steering frames between workers (io = "afxdp")
//
// An AF_XDP socket receives one queue of one interface, and the NIC chooses a frame's queue by a
// hash (RSS) that does not keep a NAT connection's two directions on one queue: a client's frame
// to the VIP and the real server's reply may arrive at sockets of different workers. So the XDP
// program runs govs's fanout hash as well (bpfgen.SteerProgramSpec, the fanout program of
// AF_PACKET read from the Ethernet header) and puts the member it chooses in front of each frame;
// the worker that reads the frame keeps the frames that are its own and copies the others into a
// single-producer, single-consumer ring to their worker (handoffRing), which forwards them as if
// it had received them on the same interface. With w workers, about (w-1)/w of the frames take
// that copy: about 40 ns for a small frame on the lab machine, both sides, cache-warm
// (BenchmarkSteerHandOff), where the kernel's receive and transmit of a frame cost microseconds
// there (bench/README.md). No state is shared but the rings.

// steerOut is the hand-off side of one AF_XDP socket of worker w on interface in.
type steerOut struct {
	w   *Worker
	in  int
	out []*handoffRing // by worker id; nil for w itself
	to  [MaxBatch]int32
	// This round's frames (the worker loop resets them): read from the socket, bounded by
	// rxBudget as a worker's own frames are; and of those, handed on and dropped for a full ring,
	// which keep the worker busy without reaching its Receive.
	read, handed, full int
}

// keep sorts a batch of frames read from the socket, bufs with their members in o.to: the
// frames that are w's own go to fs (how many is returned), the others to their worker's ring.
// A frame without a member (the program did not mark it) stays with w.
func (o *steerOut) keep(bufs [][]byte, fs []afpacket.Frame) int {
	w := o.w
	k := 0
	for i, b := range bufs {
		meta := afpacket.RxMeta{Len: uint32(len(b)), Status: statusCsumUnknown}
		to := int(o.to[i]) // the steering program's member: below len(o.out), or -1 unmarked
		if to < 0 || to >= len(o.out) || to == w.id {
			fs[k] = afpacket.Frame{Data: b, Meta: meta}
			k++
			continue
		}
		if !o.out[to].push(o.in, b, &meta) {
			w.c[cRxFrames]++
			w.drop(DropHandoffFull)
			o.full++
			continue
		}
		w.fr.woken |= 1 << (uint(to) & 63)
		w.c[cHandedOff]++
		o.handed++
	}
	return k
}

// handoffRx reads the frames another worker handed to this one from ring r, as a Receiver of
// frames that arrived on interface in: NextBatch hands out the oldest frames while they came
// from in, so the caller sets in to the interface of the oldest frame (next) before it reads.
type handoffRx struct {
	r    *handoffRing
	in   int
	held int // frames handed out by the last NextBatch, released by the next call
}

// next releases the frames handed out last and returns the interface of the oldest frame left,
// false if there is none.
func (h *handoffRx) next() (int, bool) {
	h.release()
	s := h.r.peek()
	if s == nil {
		return 0, false
	}
	return s.in, true
}

func (h *handoffRx) release() {
	if h.held > 0 {
		h.r.popN(h.held)
		h.held = 0
	}
}

func (h *handoffRx) NextBatch(fs []afpacket.Frame) int {
	h.release()
	n := 0
	for n < len(fs) {
		s := h.r.peekAt(n)
		if s == nil || s.in != h.in {
			break
		}
		fs[n] = afpacket.Frame{Data: s.data[:s.n:s.n], Meta: s.meta}
		n++
	}
	h.held = n
	return n
}

// receiveHandedOff forwards the frames other workers handed to w through rxs, up to about
// rxBudget frames per ring, and returns how many it took.
func (w *Worker) receiveHandedOff(rxs []*handoffRx, now int64) int {
	got := 0
	for _, h := range rxs {
		for took := 0; took < rxBudget; {
			in, ok := h.next()
			if !ok {
				break
			}
			h.in = in
			n := w.Receive(in, h, now)
			took += n
			got += n
		}
		h.release()
	}
	return got
}

// handedOffPending reports whether any of rxs holds frames.
func handedOffPending(rxs []*handoffRx) bool {
	for _, h := range rxs {
		if h.r.peekAt(h.held) != nil {
			return true
		}
	}
	return false
}
