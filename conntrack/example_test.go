package conntrack_test

import (
	"fmt"
	"net/netip"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/flow"
)

// Example shows a worker's per-packet use: look up, reschedule when IPVS would, insert with the
// full policy applied, touch, and expire a slice at a time.
func Example() {
	tab, err := conntrack.New(conntrack.Config{MaxEntries: 1 << 10, FullPolicy: conntrack.EvictOldestIdle})
	if err != nil {
		panic(err)
	}
	onGone := func(id uint32, c *conntrack.Conn) { /* count it; per-real counts are the table's */ }
	client := netip.MustParseAddr("::ffff:198.18.0.10").As16()
	vip := netip.MustParseAddr("::ffff:198.19.0.1").As16()
	real := netip.MustParseAddr("::ffff:198.19.0.2").As16()
	k := flow.Tuple{Src: client, Dst: vip, SrcPort: 40000, DstPort: 80, Proto: 6}
	const now = int64(1e9)

	id, dir, ok := tab.Lookup(&k)
	if ok && conntrack.NeedsReschedule(tab.Get(id).State(), dir, conntrack.TCPFlagSYN, true) {
		tab.Delete(id)
		ok = false
	}
	if !ok {
		nc := conntrack.NewConn{Real: real, RealPort: 8080, Reply: true, RS: 1, State: conntrack.StateSynRecv}
		if id, err = tab.Insert(&k, &nc, now, onGone); err != nil {
			return // ErrFull, ErrExists: count a drop
		}
		dir = conntrack.DirOriginal
	}
	old, cur := tab.Touch(id, dir, conntrack.TCPFlagSYN, now)
	a, in, _ := tab.RealConns(1)
	fmt.Println(old, cur, a, in)

	reply := tab.Tuple(tab.Get(id), conntrack.DirReply)
	id2, dir2, _ := tab.Lookup(&reply)
	_, cur = tab.Touch(id2, dir2, conntrack.TCPFlagSYN|conntrack.TCPFlagACK, now)
	_, cur = tab.Touch(id, conntrack.DirOriginal, conntrack.TCPFlagACK, now)
	a, in, _ = tab.RealConns(1)
	fmt.Println(cur, a, in)

	tab.Expire(now+16*60e9, 64, onGone)
	fmt.Println(tab.Len())
	// Output:
	// SYN_RECV SYN_RECV 0 1
	// ESTABLISHED 1 0
	// 0
}
