package afpacket

import (
	"time"

	"golang.org/x/net/bpf"
)

// Config describes one AF_PACKET socket with an RX and a TX ring on one interface.
// Zero sizes are replaced by defaults derived from the interface MTU (see Open).
type Config struct {
	// Interface is the name of the interface to bind to, in the network namespace of the
	// thread that calls Open.
	Interface string

	// BlockSize is the RX block size in bytes: a power-of-two multiple of the page size.
	// A frame never spans blocks, so a block must hold the largest frame plus about 100
	// bytes of headers; bigger frames arrive truncated (RxMeta.Len > len(frame)).
	// Zero picks the smallest power of two that holds one maximal frame (4 KiB for
	// MTU 1500 without VnetHdr, 128 KiB with VnetHdr so that 64 KiB GSO frames fit).
	BlockSize int
	// NumBlocks is the number of RX blocks. Zero sizes the ring to about 4 MiB
	// (at least 8 blocks).
	NumBlocks int
	// BlockTimeout is the TPACKETv3 block retire timer, the latency floor at low load.
	// The kernel counts in whole milliseconds; zero means 1 ms, the minimum.
	BlockTimeout time.Duration

	// TxFrameSize is the fixed size of one TX ring slot including the 48-byte
	// tpacket3_hdr and, with VnetHdr, the 10-byte virtio_net_hdr: a multiple of 16.
	// Zero picks the smallest power of two that holds one maximal frame.
	TxFrameSize int
	// TxFrames is the number of TX slots. Zero sizes the ring to about 4 MiB
	// (at least 64 and at most 1024 slots).
	TxFrames int

	// FrameRing selects a TPACKET_V2 RX ring instead of TPACKETv3 blocks: every frame is
	// handed to user space (and wakes a poller) as soon as it is written, with no retire
	// timer, at the price of one fixed-size slot per frame. Such a socket has no TX ring
	// (TxFrame returns nil): transmit through a TPACKETv3 socket on the same interface.
	// BlockSize, NumBlocks, BlockTimeout, TxFrameSize and TxFrames are ignored.
	FrameRing bool
	// RxFrames is the number of slots of a FrameRing. Zero sizes the ring to about 8 MiB
	// (at least 64 slots). A slot holds one maximal frame (64 KiB GSO frames with VnetHdr).
	RxFrames int

	// SendOnly makes a socket with a TX ring only: bound with protocol 0, it is no packet tap, so
	// received frames never reach it (no copy, no filter run, no retire timer), and NextBatch
	// finds nothing. BlockSize, NumBlocks, BlockTimeout, Filter and the fanout fields must be
	// zero.
	SendOnly bool

	// Filter is a classic BPF socket filter attached before bind; nil accepts all.
	Filter []bpf.RawInstruction
	// FanoutGroup, when not zero, joins the PACKET_FANOUT group with this id after bind.
	// Members get indices in join order.
	FanoutGroup uint16
	// FanoutProg is a PACKET_FANOUT_CBPF program returning the member index. Nil with a
	// FanoutGroup selects PACKET_FANOUT_HASH.
	FanoutProg []bpf.RawInstruction

	// VnetHdr turns on PACKET_VNET_HDR: received frames carry the kernel's GSO and
	// checksum offload state in RxMeta.Vnet, and TX frames are sent with a
	// virtio_net_hdr (which also makes veth build a cheaper linear skb).
	VnetHdr bool
	// QdiscBypass sends TX frames straight to the driver (PACKET_QDISC_BYPASS).
	QdiscBypass bool
}

// RxMeta describes one received frame.
type RxMeta struct {
	Status   uint32 // tp_status bits, see the Status* constants
	Len      uint32 // length on the wire (tp_len); len(frame) < Len means the frame was truncated
	VLANTCI  uint16 // valid when Status&StatusVLANValid
	VLANTPID uint16 // valid when Status&StatusVLANTPIDValid
	Vnet     VnetHdr
}

// Frame is one received frame with its metadata, as NextBatch hands them out.
type Frame struct {
	Data []byte
	Meta RxMeta
}

// VnetHdr is a struct virtio_net_hdr in host byte order (packet sockets use the legacy,
// native-endian layout).
type VnetHdr struct {
	Flags      uint8 // VnetHdrFNeedsCsum, VnetHdrFDataValid
	GSOType    uint8 // VnetHdrGSONone, VnetHdrGSOTCPv4, ...
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// VnetHdrLen is the size of a struct virtio_net_hdr in front of each frame with VnetHdr.
const VnetHdrLen = 10

// tp_status bits (linux/if_packet.h) that describe a received frame.
const (
	StatusUser          = 0x1   // TP_STATUS_USER
	StatusLosing        = 0x4   // TP_STATUS_LOSING: the ring dropped frames
	StatusCsumNotReady  = 0x8   // TP_STATUS_CSUMNOTREADY: checksum is partial (CHECKSUM_PARTIAL), fill it in before it leaves a host
	StatusVLANValid     = 0x10  // TP_STATUS_VLAN_VALID
	StatusBlkTmo        = 0x20  // TP_STATUS_BLK_TMO: block retired by the timer (block status only)
	StatusVLANTPIDValid = 0x40  // TP_STATUS_VLAN_TPID_VALID
	StatusCsumValid     = 0x80  // TP_STATUS_CSUM_VALID: the device verified the checksum
	StatusGSOTCP        = 0x100 // TP_STATUS_GSO_TCP: a TCP GSO super-frame
)

// virtio_net_hdr flags and gso_type values (linux/virtio_net.h).
const (
	VnetHdrFNeedsCsum = 1
	VnetHdrFDataValid = 2

	VnetHdrGSONone  = 0
	VnetHdrGSOTCPv4 = 1
	VnetHdrGSOUDP   = 3
	VnetHdrGSOTCPv6 = 4
	VnetHdrGSOUDPL4 = 5
	VnetHdrGSOECN   = 0x80
)

// Stats are the kernel's PACKET_STATISTICS, accumulated over the socket's life.
type Stats struct {
	Packets uint64 // frames that passed the filter (including dropped ones)
	Drops   uint64 // frames dropped because the RX ring was full
	Freezes uint64 // times the RX ring froze (every block owned by user space)
}
