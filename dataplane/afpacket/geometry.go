package afpacket

import (
	"fmt"
	"math/bits"
	"time"
)

// Ring layout constants from linux/if_packet.h, used to size blocks and frames.
const (
	tpacketAlign     = 16                                // TPACKET_ALIGNMENT
	tpacket3HdrLen   = 48                                // TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
	sockaddrLLLen    = 20                                // sizeof(struct sockaddr_ll)
	blockDescLen     = 48                                // BLK_PLUS_PRIV(0): ALIGN8(sizeof(struct tpacket_block_desc))
	txDataOff        = tpacket3HdrLen                    // a TX frame's data (or vnet hdr) starts here
	rxHeadroom       = 96 + VnetHdrLen                   // worst case tp_mac of an RX frame (tpacket_rcv: netoff)
	maxVLANTags      = 2                                 // QinQ
	ethHdrLen        = 14                                // Ethernet header
	maxGSOFrame      = 65536 + ethHdrLen + 4*maxVLANTags // GSO_LEGACY_MAX_SIZE plus link headers
	defaultRingBytes = 4 << 20                           // target size of each ring when counts are zero
	maxBlockSize     = 4 << 20                           // refuse blocks or frames larger than this
	maxRingBytes     = 1 << 30                           // refuse rings larger than this
	maxBPFInsns      = 4096                              // BPF_MAXINSNS
)

// geometry is a validated ring layout.
type geometry struct {
	frameRing             bool // TPACKET_V2 RX ring of rxFrames slots of rxFrameSize, no TX ring
	rxFrameSize, rxFrames int
	rxBlockSize, rxBlocks int
	rxTimeoutMS           uint32
	txFrameSize, txFrames int
	txBlockSize, txBlocks int
}

func (g geometry) rxBytes() int { return g.rxBlockSize * g.rxBlocks }
func (g geometry) txBytes() int { return g.txBlockSize * g.txBlocks }

// tpacket2HdrLen is TPACKET2_HDRLEN aligned: the tpacket2_hdr and the sockaddr_ll after it.
const tpacket2HdrLen = 32 + sockaddrLLLen

// defaultFrameRingBytes is the target size of a TPACKET_V2 RX ring when RxFrames is zero.
const defaultFrameRingBytes = 8 << 20

// newFrameGeometry lays out a TPACKET_V2 RX ring: fixed slots that each hold one maximal frame
// behind its headers, packed into blocks of up to 1 MiB (a slot never spans blocks).
func newFrameGeometry(cfg Config, mtu, pageSize int) (geometry, error) {
	g := geometry{frameRing: true}
	// Slots hold frames up to the MTU. A larger (GSO) frame is truncated in its slot, marked
	// TP_STATUS_COPY, and queued whole on the socket (PACKET_COPY_THRESH), where NextBatch reads it:
	// slots sized for 64 KiB GSO frames would leave a ring of a few hundred frames that a burst
	// overflows.
	need := rxHeadroom + maxFrameLen(mtu, false)
	g.rxFrameSize = (need + tpacketAlign - 1) &^ (tpacketAlign - 1)
	if g.rxFrameSize <= pageSize {
		g.rxFrameSize = roundPow2(g.rxFrameSize)
		g.rxBlockSize = pageSize
	} else {
		g.rxBlockSize = max(roundPow2(g.rxFrameSize), min(1<<20, maxBlockSize))
	}
	perBlock := g.rxBlockSize / g.rxFrameSize
	frames := cfg.RxFrames
	if frames == 0 {
		frames = max(64, defaultFrameRingBytes/g.rxFrameSize)
	}
	if frames < 1 || frames > maxRingBytes/g.rxFrameSize {
		return g, fmt.Errorf("invalid RxFrames %d: use 1 to %d frames of %d bytes", frames, maxRingBytes/g.rxFrameSize, g.rxFrameSize)
	}
	g.rxBlocks = (frames + perBlock - 1) / perBlock
	g.rxFrames = g.rxBlocks * perBlock
	return g, checkPrograms(cfg)
}

// maxFrameLen is the largest link-layer frame the socket must carry for an MTU.
// With vnet headers the kernel hands over whole GSO super-frames, so they must fit.
func maxFrameLen(mtu int, vnet bool) int {
	n := ethHdrLen + 4*maxVLANTags + mtu
	if vnet && n < maxGSOFrame {
		n = maxGSOFrame
	}
	return n
}

func roundPow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

// newGeometry fills in defaults and checks cfg against the kernel's rules in packet_set_ring
// (net/packet/af_packet.c), so that a bad value comes back as an error naming the field
// rather than as EINVAL from setsockopt.
func newGeometry(cfg Config, mtu, pageSize int) (geometry, error) {
	if cfg.FrameRing {
		return newFrameGeometry(cfg, mtu, pageSize)
	}
	var g geometry
	frame := maxFrameLen(mtu, cfg.VnetHdr)
	if cfg.SendOnly {
		if cfg.BlockSize != 0 || cfg.NumBlocks != 0 || cfg.BlockTimeout != 0 || cfg.Filter != nil || cfg.FanoutGroup != 0 || cfg.FanoutProg != nil {
			return g, fmt.Errorf("invalid SendOnly socket: it has no RX ring, filter or fanout group; leave BlockSize, NumBlocks, BlockTimeout, Filter, FanoutGroup and FanoutProg zero")
		}
		return g, g.setTx(cfg, frame, pageSize)
	}

	g.rxBlockSize = cfg.BlockSize
	if g.rxBlockSize == 0 {
		g.rxBlockSize = max(pageSize, roundPow2(blockDescLen+rxHeadroom+frame))
	}
	if !isPow2(g.rxBlockSize) || g.rxBlockSize%pageSize != 0 || g.rxBlockSize > maxBlockSize {
		return g, fmt.Errorf("invalid BlockSize %d: use a power of two between the page size %d and %d", g.rxBlockSize, pageSize, maxBlockSize)
	}
	g.rxBlocks = cfg.NumBlocks
	if g.rxBlocks == 0 {
		g.rxBlocks = max(8, defaultRingBytes/g.rxBlockSize)
	}
	if g.rxBlocks < 1 || g.rxBlocks > maxRingBytes/g.rxBlockSize {
		return g, fmt.Errorf("invalid NumBlocks %d: use 1 to %d blocks of %d bytes", g.rxBlocks, maxRingBytes/g.rxBlockSize, g.rxBlockSize)
	}

	switch {
	case cfg.BlockTimeout < 0 || cfg.BlockTimeout > time.Minute:
		return g, fmt.Errorf("invalid BlockTimeout %v: use 1ms to 1m", cfg.BlockTimeout)
	case cfg.BlockTimeout == 0:
		g.rxTimeoutMS = 1
	default:
		// Round up: the kernel counts whole milliseconds and 0 would mean "derive from size".
		g.rxTimeoutMS = uint32((cfg.BlockTimeout + time.Millisecond - 1) / time.Millisecond)
	}

	if err := g.setTx(cfg, frame, pageSize); err != nil {
		return g, err
	}
	return g, checkPrograms(cfg)
}

// setTx lays out the TX ring for frames up to frame bytes.
func (g *geometry) setTx(cfg Config, frame, pageSize int) error {
	g.txFrameSize = cfg.TxFrameSize
	if g.txFrameSize == 0 {
		hdr := txDataOff
		if cfg.VnetHdr {
			hdr += VnetHdrLen
		}
		g.txFrameSize = max(2048, roundPow2(hdr+frame))
	}
	minTx := txDataOff + VnetHdrLen + ethHdrLen
	if g.txFrameSize%tpacketAlign != 0 || g.txFrameSize < minTx || g.txFrameSize > maxBlockSize {
		return fmt.Errorf("invalid TxFrameSize %d: use a multiple of %d between %d and %d", g.txFrameSize, tpacketAlign, minTx, maxBlockSize)
	}
	// A TX block holds whole frames; the smallest page multiple that holds one frame keeps
	// the frames dense when the frame size is a power of two.
	g.txBlockSize = max(pageSize, roundPow2(g.txFrameSize))
	perBlock := g.txBlockSize / g.txFrameSize
	frames := cfg.TxFrames
	if frames == 0 {
		frames = min(1024, max(64, defaultRingBytes/g.txFrameSize))
	}
	if frames < 1 || frames > maxRingBytes/g.txFrameSize {
		return fmt.Errorf("invalid TxFrames %d: use 1 to %d frames of %d bytes", frames, maxRingBytes/g.txFrameSize, g.txFrameSize)
	}
	g.txBlocks = (frames + perBlock - 1) / perBlock
	g.txFrames = g.txBlocks * perBlock
	return nil
}

// checkPrograms checks cfg's BPF programs against the kernel's limits.
func checkPrograms(cfg Config) error {
	if len(cfg.Filter) > maxBPFInsns {
		return fmt.Errorf("invalid Filter: %d instructions, the kernel accepts at most %d", len(cfg.Filter), maxBPFInsns)
	}
	if len(cfg.FanoutProg) > maxBPFInsns {
		return fmt.Errorf("invalid FanoutProg: %d instructions, the kernel accepts at most %d", len(cfg.FanoutProg), maxBPFInsns)
	}
	if cfg.FanoutProg != nil && cfg.FanoutGroup == 0 {
		return fmt.Errorf("invalid FanoutProg: set FanoutGroup to join a fanout group")
	}
	return nil
}
