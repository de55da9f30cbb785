package announce

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	peerMAC    = [6]byte{0x02, 0, 0x5e, 0, 0, 0x02}
	ourMAC     = [6]byte{0x02, 0, 0x5e, 0, 0, 0x01}
	peerAddr   = netip.MustParseAddr("2001:2:20::2")
	vip6       = netip.MustParseAddr("2001:2:20::100")
	solicitVIP = netip.MustParseAddr("ff02::1:ff00:100")
)

// nsFrame builds a Neighbor Solicitation for target from src to dst with gopacket, the reference
// encoder; withSLLA adds a Source Link-Layer Address option.
func nsFrame(t testing.TB, src, dst, target netip.Addr, withSLLA bool) []byte {
	t.Helper()
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: net.IP(target.AsSlice())}
	if withSLLA {
		ns.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: peerMAC[:]}}
	}
	dstMAC := multicastMAC(dst)
	if !dst.IsMulticast() {
		dstMAC = ourMAC
	}
	eth := &layers.Ethernet{SrcMAC: peerMAC[:], DstMAC: dstMAC[:], EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, icmp, ns); err != nil {
		t.Fatalf("failed to build NS: %v", err)
	}
	return buf.Bytes()
}

func TestParseNS(t *testing.T) {
	valid := nsFrame(t, peerAddr, solicitVIP, vip6, true)
	mutate := func(f func(b []byte)) []byte {
		b := append([]byte(nil), valid...)
		f(b)
		return b
	}
	tests := []struct {
		name  string
		frame []byte
		want  dropReason
		slla  bool
	}{
		{name: "valid multicast with SLLA", frame: valid, slla: true},
		{name: "valid unicast without SLLA", frame: nsFrame(t, peerAddr, vip6, vip6, false)},
		{name: "valid DAD", frame: nsFrame(t, netip.IPv6Unspecified(), solicitVIP, vip6, false)},
		{name: "ethernet padding ignored", frame: append(append([]byte(nil), valid...), 0, 0, 0, 0), slla: true},
		{name: "empty", frame: nil, want: dropTruncated},
		{name: "truncated", frame: valid[:icmpOff+nsMinimumSize-1], want: dropTruncated},
		{name: "payload length past frame", frame: mutate(func(b []byte) { b[ethHeaderLen+5] += 8 }), want: dropTruncated},
		{name: "payload length too short", frame: mutate(func(b []byte) { binary.BigEndian.PutUint16(b[ethHeaderLen+4:], 8) }), want: dropTruncated},
		{name: "not IPv6 ethertype", frame: mutate(func(b []byte) { b[12] = 0x08; b[13] = 0 }), want: dropNotNS},
		{name: "IP version 4", frame: mutate(func(b []byte) { b[ethHeaderLen] = 0x45 }), want: dropNotNS},
		{name: "extension header", frame: mutate(func(b []byte) { b[ethHeaderLen+6] = 0 }), want: dropNotNS},
		{name: "NA not NS", frame: mutate(func(b []byte) { b[icmpOff] = icmpTypeNA }), want: dropNotNS},
		{name: "nonzero code", frame: mutate(func(b []byte) { b[icmpOff+1] = 1 }), want: dropNotNS},
		{name: "routed (hop limit 254)", frame: mutate(func(b []byte) { b[ethHeaderLen+7] = 254 }), want: dropHopLimit},
		{name: "bad checksum", frame: mutate(func(b []byte) { b[icmpOff+2] ^= 0xff }), want: dropChecksum},
		{name: "zero-length option", frame: fixChecksum(mutate(func(b []byte) { b[icmpOff+25] = 0 })), want: dropBadOption},
		{name: "option past end", frame: fixChecksum(mutate(func(b []byte) { b[icmpOff+25] = 2 })), want: dropBadOption},
		{name: "multicast target", frame: nsFrame(t, peerAddr, solicitVIP, solicitVIP, true), want: dropBadTarget},
		{name: "DAD with SLLA", frame: nsFrame(t, netip.IPv6Unspecified(), solicitVIP, vip6, true), want: dropBadDAD},
		{name: "DAD to unicast", frame: nsFrame(t, netip.IPv6Unspecified(), vip6, vip6, false), want: dropBadDAD},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, reason := parseNS(tt.frame)
			if reason != tt.want {
				t.Fatalf("parseNS reason = %v, want %v", reason, tt.want)
			}
			if reason != 0 {
				return
			}
			if ns.Target != vip6 || ns.EthSrc != peerMAC || ns.HasSLLA != tt.slla {
				t.Errorf("parseNS = %+v, want target %s, source MAC %x, SLLA %v", ns, vip6, peerMAC, tt.slla)
			}
			if tt.slla && ns.SLLA != peerMAC {
				t.Errorf("SLLA = %x, want %x", ns.SLLA, peerMAC)
			}
		})
	}
}

// fixChecksum recomputes the ICMPv6 checksum of an NS frame built by nsFrame after a mutation.
func fixChecksum(b []byte) []byte {
	icmp := b[icmpOff:]
	icmp[2], icmp[3] = 0, 0
	src := netip.AddrFrom16([16]byte(b[ethHeaderLen+8 : ethHeaderLen+24]))
	dst := netip.AddrFrom16([16]byte(b[ethHeaderLen+24 : ethHeaderLen+40]))
	binary.BigEndian.PutUint16(icmp[2:], icmpChecksum(src, dst, icmp))
	return b
}

func TestNAReply(t *testing.T) {
	tests := []struct {
		name      string
		frame     []byte
		wantMAC   [6]byte
		wantDst   netip.Addr
		wantFlags byte
	}{
		{name: "to SLLA", frame: nsFrame(t, peerAddr, solicitVIP, vip6, true), wantMAC: peerMAC, wantDst: peerAddr, wantFlags: naFlagSolicited | naFlagOverride},
		{name: "to ethernet source", frame: nsFrame(t, peerAddr, vip6, vip6, false), wantMAC: peerMAC, wantDst: peerAddr, wantFlags: naFlagSolicited | naFlagOverride},
		{name: "DAD to all nodes", frame: nsFrame(t, netip.IPv6Unspecified(), solicitVIP, vip6, false), wantMAC: allNodesMAC, wantDst: allNodes, wantFlags: naFlagOverride},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, reason := parseNS(tt.frame)
			if reason != 0 {
				t.Fatalf("parseNS: %v", reason)
			}
			mac, dst, flags := naReply(ns)
			if mac != tt.wantMAC || dst != tt.wantDst || flags != tt.wantFlags {
				t.Errorf("naReply = %x %s %#x, want %x %s %#x", mac, dst, flags, tt.wantMAC, tt.wantDst, tt.wantFlags)
			}
		})
	}
}

// TestBuildNA decodes our NA with gopacket, including its checksum.
func TestBuildNA(t *testing.T) {
	b := make([]byte, naFrameLen)
	if n := buildNA(b[:naFrameLen-1], ourMAC, peerMAC, peerAddr, vip6, 0); n != 0 {
		t.Fatalf("buildNA into a short buffer = %d, want 0", n)
	}
	n := buildNA(b, ourMAC, peerMAC, peerAddr, vip6, naFlagSolicited|naFlagOverride)
	if n != naFrameLen {
		t.Fatalf("buildNA = %d, want %d", n, naFrameLen)
	}
	pkt := gopacket.NewPacket(b[:n], layers.LayerTypeEthernet, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode our NA: %v", el.Error())
	}
	eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	icmp := pkt.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	na := pkt.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if [6]byte(eth.SrcMAC) != ourMAC || [6]byte(eth.DstMAC) != peerMAC {
		t.Errorf("ethernet %s → %s, want %x → %x", eth.SrcMAC, eth.DstMAC, ourMAC, peerMAC)
	}
	if ip.HopLimit != 255 || !ip.SrcIP.Equal(vip6.AsSlice()) || !ip.DstIP.Equal(peerAddr.AsSlice()) {
		t.Errorf("IPv6 hop limit %d %s → %s, want 255 %s → %s", ip.HopLimit, ip.SrcIP, ip.DstIP, vip6, peerAddr)
	}
	if !na.TargetAddress.Equal(vip6.AsSlice()) || !na.Solicited() || !na.Override() || na.Router() {
		t.Errorf("NA target %s flags %#x, want %s with S and O", na.TargetAddress, na.Flags, vip6)
	}
	if len(na.Options) != 1 || na.Options[0].Type != layers.ICMPv6OptTargetAddress || [6]byte(na.Options[0].Data) != ourMAC {
		t.Errorf("NA options %v, want one TLLA %x", na.Options, ourMAC)
	}
	// Verify the checksum independently of our own summing code's use in buildNA.
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	if got := icmpChecksum(vip6, peerAddr, b[icmpOff:n]); got != 0 {
		t.Errorf("checksum over the NA = %#04x, want 0", got)
	}
	re := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(re, gopacket.SerializeOptions{ComputeChecksums: true}, icmp, na); err != nil {
		t.Fatal(err)
	}
	if want := binary.BigEndian.Uint16(re.Bytes()[2:4]); want != binary.BigEndian.Uint16(b[icmpOff+2:]) {
		t.Errorf("checksum %#04x, gopacket computes %#04x", binary.BigEndian.Uint16(b[icmpOff+2:]), want)
	}
}

func TestSolicitedNode(t *testing.T) {
	if got, want := solicitedNodeMAC(vip6), [6]byte{0x33, 0x33, 0xff, 0, 0x01, 0}; got != want {
		t.Errorf("solicitedNodeMAC(%s) = %x, want %x", vip6, got, want)
	}
	for a, want := range map[string]bool{"ff02::1:ff00:100": true, "ff02::1": false, "ff02::2:ff00:100": false, "2001:2::1": false, "198.18.0.1": false} {
		if got := isSolicitedNode(netip.MustParseAddr(a)); got != want {
			t.Errorf("isSolicitedNode(%s) = %v, want %v", a, got, want)
		}
	}
}

var sinkN int

func TestNDPNoAllocs(t *testing.T) {
	frame := nsFrame(t, peerAddr, solicitVIP, vip6, true)
	out := make([]byte, naFrameLen)
	n := testing.AllocsPerRun(1000, func() {
		ns, _ := parseNS(frame)
		mac, dst, flags := naReply(ns)
		sinkN = buildNA(out, ourMAC, mac, dst, ns.Target, flags)
	})
	if n != 0 {
		t.Errorf("parseNS+buildNA allocate %v times, want 0", n)
	}
}

// FuzzParseNS checks parseNS never panics and that whatever it accepts round-trips: the NA we
// would send in reply is itself well-formed (gopacket decodes it with a valid checksum).
func FuzzParseNS(f *testing.F) {
	f.Add(nsFrame(f, peerAddr, solicitVIP, vip6, true))
	f.Add(nsFrame(f, netip.IPv6Unspecified(), solicitVIP, vip6, false))
	f.Fuzz(func(t *testing.T, frame []byte) {
		ns, reason := parseNS(frame)
		if reason != 0 {
			return
		}
		if ns.Target.IsMulticast() || !ns.Target.Is6() {
			t.Fatalf("accepted target %s", ns.Target)
		}
		mac, dst, flags := naReply(ns)
		out := make([]byte, naFrameLen)
		n := buildNA(out, ourMAC, mac, dst, ns.Target, flags)
		if got := icmpChecksum(ns.Target, dst, out[icmpOff:n]); got != 0 {
			t.Fatalf("NA checksum check = %#x", got)
		}
	})
}
