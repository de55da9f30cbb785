package xsk

// Config describes one AF_XDP socket bound to one queue of one interface.
// Zero sizes are replaced by defaults.
type Config struct {
	// Interface is the name of the interface to bind to, in the network namespace of the
	// thread that calls Open.
	Interface string
	// Queue is the interface's receive/transmit queue the socket binds to.
	Queue int

	// FrameSize is the size of one UMEM frame: 2048 or 4096 (a frame holds one Ethernet frame
	// up to about FrameSize-256 bytes, the kernel reserving XDP_PACKET_HEADROOM in copy mode).
	// Zero means 2048.
	FrameSize int
	// RxFrames is the number of receive frames and the size of the fill and RX rings: a power
	// of two. Zero means 2048. A TX-only socket (NoRx) has none.
	RxFrames int
	// TxFrames is the number of transmit frames and the size of the TX and completion rings: a
	// power of two. Zero means 2048.
	TxFrames int
	// NoRx makes a transmit-only socket: no RX ring, no receive frames.
	NoRx bool

	// ZeroCopy binds with XDP_ZEROCOPY (the driver maps the UMEM for DMA) instead of
	// XDP_COPY. veth has no zero-copy mode.
	ZeroCopy bool
	// TxBudget, if not zero, sets XDP_MAX_TX_SKB_BUDGET: how many frames one kick sends in
	// copy mode (the kernel's default is 32).
	TxBudget int
	// TxBudgetOptional makes a kernel without XDP_MAX_TX_SKB_BUDGET (before 6.17) keep its
	// default budget instead of failing Open.
	TxBudgetOptional bool
	// BusyPoll, if not zero, turns on preferred busy polling (SO_PREFER_BUSY_POLL,
	// SO_BUSY_POLL with this many microseconds, SO_BUSY_POLL_BUDGET 64): Poke then runs the
	// device's receive NAPI in the caller's thread instead of a softirq or NAPI thread, when
	// the interface defers its interrupts (napi_defer_hard_irqs, gro_flush_timeout) and the
	// socket has learnt the queue's NAPI id from its frames. veth's NAPI has none on Linux 6.18
	// (SO_INCOMING_NAPI_ID reads 0), so there it changes nothing (bench/README.md).
	BusyPoll int
}

// Stats are the kernel's XDP_STATISTICS, accumulated over the socket's life.
type Stats struct {
	RxDropped        uint64 // frames dropped for other reasons than a full ring
	RxInvalid        uint64 // invalid RX descriptors
	TxInvalid        uint64 // invalid TX descriptors
	RxRingFull       uint64 // frames dropped because the RX ring was full
	RxFillRingEmpty  uint64 // times the fill ring had no frame for a received frame
	TxRingEmptyDescs uint64 // kicks that found the TX ring empty
}

// Mode is where the XDP program runs.
type Mode int

const (
	// ModeDriver runs the program in the driver's receive path, before any skb exists
	// (XDP_FLAGS_DRV_MODE, native XDP).
	ModeDriver Mode = iota
	// ModeGeneric runs the program on the skb in the stack's receive path
	// (XDP_FLAGS_SKB_MODE); it works on any device.
	ModeGeneric
)

func (m Mode) String() string {
	if m == ModeGeneric {
		return "generic"
	}
	return "driver"
}

// Defaults.
const (
	defaultFrameSize = 2048
	defaultFrames    = 2048
)

// SteerMark marks the word a steering program puts in front of a frame (Program.SetFilterSteer),
// in host byte order: the upper 16 bits; the lower 16 are the member.
const SteerMark = 0x67760000
