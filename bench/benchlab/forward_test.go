package main

import (
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TestForwarderRewrite: the minimal forwarder's NAT picks the server from the source port,
// rewrites both MACs and the destination, and leaves both checksums right; what is not IPv4 UDP
// without options, or does not fit the slot, is refused.
func TestForwarderRewrite(t *testing.T) {
	n, err := newFwdNAT("lo", "198.19.0.11=02:00:00:00:00:11,198.19.0.12=02:00:00:00:00:12,198.19.0.13=02:00:00:00:00:13")
	if err != nil {
		t.Fatal(err)
	}
	s := testSpec()
	s.Flows = 300
	frames, err := buildFrames(s)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 2048)
	for i, f := range frames {
		l := n.rewrite(out, f)
		if l != len(f) {
			t.Fatalf("frame %d: rewrite returned %d, want %d", i, l, len(f))
		}
		pkt := gopacket.NewPacket(out[:l], layers.LayerTypeEthernet, gopacket.Default)
		eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if eth == nil || ip == nil || udp == nil {
			t.Fatalf("frame %d does not decode: %v", i, pkt.ErrorLayer())
		}
		server := int(udp.SrcPort) % 3
		if want := []string{"198.19.0.11", "198.19.0.12", "198.19.0.13"}[server]; ip.DstIP.String() != want {
			t.Errorf("frame %d: destination %v, want %s", i, ip.DstIP, want)
		}
		if eth.DstMAC[5] != byte(0x11+server) || eth.SrcMAC.String() != "00:00:00:00:00:00" {
			t.Errorf("frame %d: MACs %v -> %v", i, eth.SrcMAC, eth.DstMAC)
		}
		checkChecksums(t, i, ip, udp)
	}
	arp := append([]byte(nil), frames[0]...)
	arp[12], arp[13] = 0x08, 0x06
	withOptions := append([]byte(nil), frames[0]...)
	withOptions[14] = 0x46
	for name, f := range map[string][]byte{"arp": arp, "ip options": withOptions, "short": frames[0][:41], "too big for the slot": frames[0]} {
		dst := out
		if name == "too big for the slot" {
			dst = out[:len(f)-1]
		}
		if l := n.rewrite(dst, f); l != 0 {
			t.Errorf("%s: rewrite returned %d, want 0", name, l)
		}
	}
}
