package dataplane

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/govs/govs/dataplane/afpacket"
)

// TestProcessAllocs proves the per-packet paths allocate nothing: an established flow's forward
// and reply packets (NAT and DR, IPv4 and IPv6, with and without a partial checksum and a VLAN tag),
// and new connections once the table has been churned.
func TestProcessAllocs(t *testing.T) {
	for _, tc := range []struct {
		name, client, vip string
		proto             uint8
		rs                int // reals index in natCases style; -1 for DR (no reply)
		replySrc          string
		meta              afpacket.RxMeta
	}{
		{"nat/ipv4/tcp", "198.18.1.10:40000", "198.18.0.100:80", 6, 0, "198.18.2.1:8080", afpacket.RxMeta{}},
		{"nat/ipv4/udp", "198.18.1.10:40000", "198.18.0.100:4000", 17, 0, "198.18.2.1:4001", afpacket.RxMeta{}},
		{"nat/ipv6/tcp", "[2001:2:0:1::10]:40000", "[2001:2::100]:80", 6, 0, "[2001:2:0:2::1]:8080", afpacket.RxMeta{}},
		{"nat/ipv6/udp", "[2001:2:0:1::10]:40000", "[2001:2::100]:4000", 17, 0, "[2001:2:0:2::1]:4001", afpacket.RxMeta{}},
		{"nat/ipv4/tcp/vlan", "198.18.1.10:40000", "198.18.0.100:80", 6, 0, "198.18.2.1:8080",
			afpacket.RxMeta{Status: afpacket.StatusVLANValid, VLANTCI: 7}},
		{"dr/ipv4/tcp", "198.18.1.10:40000", "198.18.0.200:80", 6, -1, "", afpacket.RxMeta{}},
		{"dr/ipv6/tcp", "[2001:2:0:1::10]:40000", "[2001:2::200]:80", 6, -1, "", afpacket.RxMeta{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, buildTables(1, standardSpecs()...), 64)
			r.ports[0].Sink, r.ports[1].Sink = nil, nil
			first := uint8(0)
			if tc.proto == 6 {
				first = tcpSYN
			}
			r.process(0, build(t, clientPkt(tc.client, tc.vip, tc.proto, first)), tc.meta)
			fwd := build(t, clientPkt(tc.client, tc.vip, tc.proto, tcpACK))
			var rep []byte
			if tc.rs >= 0 {
				p := clientPkt(tc.replySrc, tc.client, tc.proto, tcpACK)
				p.srcMAC, p.dstMAC = macRS[0], macPort1
				rep = build(t, p)
			}
			partial := make([]byte, len(fwd))
			copy(partial, fwd)
			vnet := makePartial(t, partial)
			buf := make([]byte, 2048)
			var meta afpacket.RxMeta
			before := r.w.c[cForwarded] + r.w.c[cReplied]
			runs := 0
			allocs := testing.AllocsPerRun(200, func() {
				runs++
				r.now += 1000
				meta = tc.meta
				meta.Len = uint32(len(fwd))
				r.w.Process(0, buf[:copy(buf, fwd)], &meta, r.now)
				meta.Vnet = vnet
				r.w.Process(0, buf[:copy(buf, partial)], &meta, r.now)
				if rep != nil {
					meta = afpacket.RxMeta{Len: uint32(len(rep))}
					r.w.Process(1, buf[:copy(buf, rep)], &meta, r.now)
				}
				r.w.FlushAll()
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per packet pair, want 0", allocs)
			}
			per := uint64(2)
			if rep != nil {
				per = 3
			}
			if got := r.w.c[cForwarded] + r.w.c[cReplied] - before; got != per*uint64(runs) {
				t.Fatalf("%d frames forwarded in %d runs, want %d each; counters %v", got, runs, per, nonZero(r.w))
			}
		})
	}

	for _, withSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("new-connection-after-churn/sync=%v", withSync), func(t *testing.T) {
			newConnAllocs(t, withSync)
		})
	}
}

// newConnAllocs churns connections through a worker (with HA sync's export ring, which then
// also fills up and drops, when withSync) and counts allocations per new connection.
func newConnAllocs(t *testing.T, withSync bool) {
	{
		r := newRig(t, buildTables(1, standardSpecs()...), 256)
		r.ports[0].Sink, r.ports[1].Sink = nil, nil
		if withSync {
			r.w.EnableSync()
		}
		churn := churner(t, r)
		for range 3000 { // warm: fill and empty the table (and the export ring) several times over
			churn()
		}
		created := r.w.c[cConnsCreated]
		if allocs := testing.AllocsPerRun(500, churn); allocs != 0 {
			t.Fatalf("%v allocations per new connection, want 0", allocs)
		}
		if r.w.c[cConnsCreated]-created < 500 || r.w.ct.Len() != 0 {
			t.Fatalf("created %d connections, %d live; counters %v", r.w.c[cConnsCreated]-created, r.w.ct.Len(), nonZero(r.w))
		}
		if withSync && r.w.sync.out.dropped.Load() == 0 {
			t.Fatal("the export ring never filled: the churn did not export")
		}
	}
}

// churner returns a function that makes one new connection through r's worker (a SYN from the
// next client port) and expires it.
func churner(t testing.TB, r *rig) func() {
	syn := build(t, clientPkt("198.18.1.10:1", "198.18.0.100:80", 6, tcpSYN))
	const l4 = 14 + 20
	buf := make([]byte, len(syn))
	var meta afpacket.RxMeta
	port := uint16(1)
	return func() {
		port++
		copy(buf, syn)
		binary.BigEndian.PutUint16(buf[l4:], port) // the worker does not verify transport checksums
		r.now += 2 << 20                           // a table tick: expiry takes a step once per tick
		meta = afpacket.RxMeta{Len: uint32(len(buf))}
		r.w.Process(0, buf, &meta, r.now)
		r.w.FlushAll()
		r.w.Expire(r.now + 1e12) // far past every timeout: the connection goes
	}
}
