package ha

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"net/netip"
)

// Heartbeat is what a node tells its peers every advert interval and on every change of state.
type Heartbeat struct {
	// Node is the sender's listen address: its identity and its rank's tie-breaker.
	Node netip.AddrPort
	// Priority is the sender's priority; 0 says it is no candidate (FAULT, or resigned).
	Priority uint8
	State    State
	// Seq grows with every heartbeat a node sends. It starts at the node's start time in Unix
	// nanoseconds, so a restarted node continues above its previous life's numbers without
	// storing anything.
	Seq uint64
	// Time is the sender's wall clock at sending, Unix nanoseconds.
	Time int64
}

// Wire format, big endian, HeartbeatSize bytes:
//
//	 0  magic "GVHA"
//	 4  version (1)
//	 5  message type (1: heartbeat; 2 to 4: connection sync, see syncwire.go)
//	 6  state
//	 7  priority
//	 8  node address, 16 bytes (IPv4 as IPv4-mapped IPv6)
//	24  node port
//	26  reserved, zero
//	28  sequence number
//	36  time, Unix nanoseconds
//	44  HMAC-SHA256 over bytes 0..43 with the shared key
const (
	HeartbeatSize = 76

	wireVersion   = 1
	msgHeartbeat  = 1
	macOff        = 44
	magic0        = 'G'
	magic1        = 'V'
	magic2        = 'H'
	magic3        = 'A'
	minimumKeyLen = 16
)

// MinKeyLen is the shortest shared key accepted: 128 bits.
const MinKeyLen = minimumKeyLen

// DropReason says why a received datagram did not count as a heartbeat. It doubles as a counter
// label in `govs stats`.
type DropReason uint8

const (
	_ DropReason = iota
	// DropMalformed: not a govs heartbeat (size, magic, version, type, state).
	DropMalformed
	// DropUnlisted: the sender's address is not one of [ha] peers; ignored.
	DropUnlisted
	// DropBadMAC: the HMAC does not match, a forgery or a different key_file.
	DropBadMAC
	// DropWrongSender: authentic, but the node inside is not the address it came from.
	DropWrongSender
	// DropOldSeq: a sequence number not above the last one accepted from that peer (a replay).
	DropOldSeq
	// DropSkew: the sender's time is further from ours than maxSkew (a late replay, or clocks
	// that disagree: keep them in sync with NTP).
	DropSkew
	// DropQueueFull: the HA goroutine fell behind and the datagram was not even looked at.
	DropQueueFull
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{"invalid", "malformed", "unlisted", "bad_mac", "wrong_sender", "old_seq", "skew", "queue_full"}

func (r DropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return "invalid"
}

// signer computes heartbeat MACs with one key. It is not safe for concurrent use.
type signer struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

func newSigner(key []byte) *signer { return &signer{mac: hmac.New(sha256.New, key)} }

func (s *signer) compute(b []byte) []byte {
	s.mac.Reset()
	s.mac.Write(b[:macOff])
	return s.mac.Sum(s.sum[:0])
}

// marshal writes h, signed, into b (at least HeartbeatSize bytes) and returns the message.
func (s *signer) marshal(b []byte, h *Heartbeat) []byte {
	b = b[:HeartbeatSize]
	b[0], b[1], b[2], b[3] = magic0, magic1, magic2, magic3
	b[4], b[5], b[6], b[7] = wireVersion, msgHeartbeat, byte(h.State), h.Priority
	a := h.Node.Addr().As16()
	copy(b[8:24], a[:])
	binary.BigEndian.PutUint16(b[24:], h.Node.Port())
	b[26], b[27] = 0, 0
	binary.BigEndian.PutUint64(b[28:], h.Seq)
	binary.BigEndian.PutUint64(b[36:], uint64(h.Time))
	copy(b[macOff:], s.compute(b))
	return b
}

// unmarshal checks b's form and MAC and decodes it into h. It never panics, whatever b holds.
func (s *signer) unmarshal(b []byte, h *Heartbeat) DropReason {
	if len(b) != HeartbeatSize || b[0] != magic0 || b[1] != magic1 || b[2] != magic2 || b[3] != magic3 ||
		b[4] != wireVersion || b[5] != msgHeartbeat || !State(b[6]).valid() || b[26] != 0 || b[27] != 0 {
		return DropMalformed
	}
	if !hmac.Equal(s.compute(b), b[macOff:HeartbeatSize]) {
		return DropBadMAC
	}
	a := netip.AddrFrom16([16]byte(b[8:24])).Unmap()
	*h = Heartbeat{
		Node:     netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[24:])),
		State:    State(b[6]),
		Priority: b[7],
		Seq:      binary.BigEndian.Uint64(b[28:]),
		Time:     int64(binary.BigEndian.Uint64(b[36:])),
	}
	return 0
}
