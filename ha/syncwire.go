package ha

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"net/netip"

	"github.com/govs/govs/conntrack"
)

// Connection-sync messages travel on the heartbeat socket, between the same listen addresses,
// with the same key. Wire format, big endian:
//
//	 0  magic "GVHA"
//	 4  version (1)
//	 5  message type: msgSyncBatch, msgSyncRequest or msgSyncEnd
//	 6  entry count (msgSyncBatch; 0 otherwise)
//	 7  reserved, zero
//	 8  sender's listen address, 16 bytes (IPv4 as IPv4-mapped IPv6)
//	24  sender's listen port
//	26  reserved, zero
//	28  sequence number: the sender's sync messages number 1 up from its start time in Unix
//	    nanoseconds, so a receiver sees a gap (a lost datagram) and a replay alike
//	36  time, Unix nanoseconds
//	44  entries, syncEntrySize bytes each (below)
//	..  HMAC-SHA256 over everything before it
//
// An entry (conntrack.SyncEntry):
//
//	 0  client address, 16 bytes (a template's: masked by persistence_netmask)
//	16  VIP, 16 bytes
//	32  real server's address, 16 bytes
//	48  client port (a template's: 0), VIP port, real server's port, 2 bytes each
//	54  protocol, state (conntrack.State: a connection's, or TEMPLATE), operation (set, remove,
//	    local: a FullNAT connection's local address and port in the real server's fields, before
//	    its set), the data-plane port the client side came in on
//	58  next hop towards the client, 6 bytes
//
// A receiver skips, one by one, entries whose operation or state it does not know, and applies the
// rest of the message: a new kind of entry needs no new version, and a node that knows it can run
// beside one that does not (the older one then simply lacks those entries after a takeover).
const (
	msgSyncBatch   = 2 // connection changes (or a snapshot's entries)
	msgSyncRequest = 3 // a backup asks the active node for a snapshot
	msgSyncEnd     = 4 // the active node's snapshot is complete: every entry before this was in it

	syncHeaderSize = 44
	syncEntrySize  = 64
	syncMACSize    = sha256.Size
	// syncMaxEntries keeps a batch within one 1500-byte Ethernet frame (1472 bytes of UDP payload).
	syncMaxEntries = (1472 - syncHeaderSize - syncMACSize) / syncEntrySize
	syncMaxSize    = syncHeaderSize + syncMaxEntries*syncEntrySize + syncMACSize
)

// syncMsg is a decoded sync message's header.
type syncMsg struct {
	typ   uint8
	node  netip.AddrPort
	seq   uint64
	time  int64
	count int
}

// syncCodec signs and checks sync messages with one key. It is not safe for concurrent use.
type syncCodec struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

func newSyncCodec(key []byte) *syncCodec { return &syncCodec{mac: hmac.New(sha256.New, key)} }

// marshal writes a message of type typ with entries into b (at least syncMaxSize bytes) and
// returns it; at most syncMaxEntries entries fit.
func (c *syncCodec) marshal(b []byte, typ uint8, node netip.AddrPort, seq uint64, now int64, entries []conntrack.SyncEntry) []byte {
	n := min(len(entries), syncMaxEntries)
	size := syncHeaderSize + n*syncEntrySize
	b = b[:size+syncMACSize]
	b[0], b[1], b[2], b[3] = magic0, magic1, magic2, magic3
	b[4], b[5], b[6], b[7] = wireVersion, typ, byte(n), 0
	a := node.Addr().As16()
	copy(b[8:24], a[:])
	binary.BigEndian.PutUint16(b[24:], node.Port())
	b[26], b[27] = 0, 0
	binary.BigEndian.PutUint64(b[28:], seq)
	binary.BigEndian.PutUint64(b[36:], uint64(now))
	for i := range n {
		putSyncEntry(b[syncHeaderSize+i*syncEntrySize:], &entries[i])
	}
	c.mac.Reset()
	c.mac.Write(b[:size])
	copy(b[size:], c.mac.Sum(c.sum[:0]))
	return b
}

// unmarshal checks b's form and MAC and decodes its header into m; the entries are read with
// entry. It never panics, whatever b holds.
func (c *syncCodec) unmarshal(b []byte, m *syncMsg) DropReason {
	if len(b) < syncHeaderSize+syncMACSize || b[0] != magic0 || b[1] != magic1 || b[2] != magic2 || b[3] != magic3 ||
		b[4] != wireVersion || b[5] < msgSyncBatch || b[5] > msgSyncEnd || b[7] != 0 || b[26] != 0 || b[27] != 0 {
		return DropMalformed
	}
	n := int(b[6])
	size := syncHeaderSize + n*syncEntrySize
	if n > syncMaxEntries || len(b) != size+syncMACSize || (b[5] != msgSyncBatch && n != 0) {
		return DropMalformed
	}
	c.mac.Reset()
	c.mac.Write(b[:size])
	if !hmac.Equal(c.mac.Sum(c.sum[:0]), b[size:]) {
		return DropBadMAC
	}
	*m = syncMsg{
		typ:   b[5],
		node:  netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), binary.BigEndian.Uint16(b[24:])),
		seq:   binary.BigEndian.Uint64(b[28:]),
		time:  int64(binary.BigEndian.Uint64(b[36:])),
		count: n,
	}
	return 0
}

// syncEntryAt decodes entry i of a message unmarshal accepted; false for an entry this node does
// not know (unknown operation or state), which the caller skips.
func syncEntryAt(b []byte, i int, e *conntrack.SyncEntry) bool {
	p := b[syncHeaderSize+i*syncEntrySize:]
	*e = conntrack.SyncEntry{
		Client: [16]byte(p[0:16]), VIP: [16]byte(p[16:32]), Real: [16]byte(p[32:48]),
		CPort: binary.BigEndian.Uint16(p[48:]), VPort: binary.BigEndian.Uint16(p[50:]), RPort: binary.BigEndian.Uint16(p[52:]),
		Proto: p[54], State: conntrack.State(p[55]), Op: conntrack.SyncOp(p[56]), InPort: p[57],
		ClientMAC: [6]byte(p[58:64]),
	}
	return (e.Op == conntrack.SyncSet || e.Op == conntrack.SyncRemove || e.Op == conntrack.SyncLocal) && e.State <= conntrack.StateTemplate
}

func putSyncEntry(p []byte, e *conntrack.SyncEntry) {
	copy(p[0:16], e.Client[:])
	copy(p[16:32], e.VIP[:])
	copy(p[32:48], e.Real[:])
	binary.BigEndian.PutUint16(p[48:], e.CPort)
	binary.BigEndian.PutUint16(p[50:], e.VPort)
	binary.BigEndian.PutUint16(p[52:], e.RPort)
	p[54], p[55], p[56], p[57] = e.Proto, byte(e.State), byte(e.Op), e.InPort
	copy(p[58:64], e.ClientMAC[:])
}
