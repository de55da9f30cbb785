package main

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func testSpec() flowSpec {
	return flowSpec{
		SrcMAC:    net.HardwareAddr{0x02, 0, 0, 0, 0, 1},
		DstMAC:    net.HardwareAddr{0x02, 0, 0, 0, 0, 2},
		Src:       netip.MustParseAddr("198.18.0.10"),
		Dst:       netip.MustParseAddr("198.18.0.100"),
		DstPort:   9000,
		FirstPort: 1024,
		Flows:     64512,
		FrameLen:  64,
	}
}

// TestBuildFrames decodes every frame with gopacket and checks the headers and both checksums
// against gopacket's own computation.
func TestBuildFrames(t *testing.T) {
	for _, tt := range []struct {
		name     string
		flows    int
		frameLen int
	}{
		{"64-byte all flows", 64512, 64},
		{"minimum no payload", 3, minFrameLen},
		{"odd payload", 5, 65},
		{"full size", 2, 1514},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := testSpec()
			s.Flows, s.FrameLen = tt.flows, tt.frameLen
			frames, err := buildFrames(s)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) != tt.flows {
				t.Fatalf("%d frames, want %d", len(frames), tt.flows)
			}
			seen := make(map[uint16]bool, len(frames))
			for i, f := range frames {
				if len(f) != tt.frameLen || cap(f) != tt.frameLen {
					t.Fatalf("frame %d: len %d cap %d, want %d", i, len(f), cap(f), tt.frameLen)
				}
				// Decoding every one of 64k frames is slow; check a spread and the last.
				if i%997 != 0 && i != len(frames)-1 {
					seen[binary.BigEndian.Uint16(f[34:36])] = true
					continue
				}
				pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
				eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
				ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
				if eth == nil || ip == nil || udp == nil {
					t.Fatalf("frame %d does not decode as Ethernet/IPv4/UDP: %v", i, pkt.ErrorLayer())
				}
				if eth.SrcMAC.String() != s.SrcMAC.String() || eth.DstMAC.String() != s.DstMAC.String() {
					t.Errorf("frame %d: MACs %v -> %v", i, eth.SrcMAC, eth.DstMAC)
				}
				if ip.SrcIP.String() != "198.18.0.10" || ip.DstIP.String() != "198.18.0.100" || ip.TTL != 64 || int(ip.Length) != tt.frameLen-ethHeaderLen {
					t.Errorf("frame %d: IPv4 %v -> %v ttl %d len %d", i, ip.SrcIP, ip.DstIP, ip.TTL, ip.Length)
				}
				if want := uint16(1024 + i); uint16(udp.SrcPort) != want || udp.DstPort != 9000 {
					t.Errorf("frame %d: UDP %d -> %d, want %d -> 9000", i, udp.SrcPort, udp.DstPort, want)
				}
				seen[uint16(udp.SrcPort)] = true

				checkChecksums(t, i, ip, udp)
			}
			if len(seen) != tt.flows {
				t.Errorf("%d distinct source ports, want %d", len(seen), tt.flows)
			}
		})
	}
}

func TestBuildFramesRejects(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*flowSpec)
	}{
		{"short MAC", func(s *flowSpec) { s.DstMAC = s.DstMAC[:4] }},
		{"IPv6", func(s *flowSpec) { s.Dst = netip.MustParseAddr("2001:2::100") }},
		{"frame too short", func(s *flowSpec) { s.FrameLen = minFrameLen - 1 }},
		{"frame too long", func(s *flowSpec) { s.FrameLen = 1515 }},
		{"ports overflow", func(s *flowSpec) { s.FirstPort, s.Flows = 60000, 6000 }},
		{"port zero", func(s *flowSpec) { s.FirstPort = 0 }},
		{"no flows", func(s *flowSpec) { s.Flows = 0 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := testSpec()
			tt.mod(&s)
			if _, err := buildFrames(s); err == nil {
				t.Error("buildFrames accepted a bad spec")
			}
		})
	}
}

// TestWriteFrameNoAllocs pins the per-frame builder at zero allocations.
func TestWriteFrameNoAllocs(t *testing.T) {
	s := testSpec()
	f := make([]byte, s.FrameLen)
	port := uint16(1024)
	if n := testing.AllocsPerRun(1000, func() { writeFrame(f, s, port, port); port++ }); n != 0 {
		t.Errorf("writeFrame allocates %v times per frame, want 0", n)
	}
}

// checkChecksums recomputes frame i's IPv4 and UDP checksums with gopacket and compares.
func checkChecksums(t *testing.T, i int, ip *layers.IPv4, udp *layers.UDP) {
	t.Helper()
	gotIP, gotUDP := ip.Checksum, udp.Checksum
	buf := gopacket.NewSerializeBuffer()
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true},
		ip, udp, gopacket.Payload(udp.Payload)); err != nil {
		t.Fatal(err)
	}
	re := buf.Bytes()
	if want := binary.BigEndian.Uint16(re[10:12]); gotIP != want {
		t.Errorf("frame %d: IPv4 checksum %#04x, want %#04x", i, gotIP, want)
	}
	if want := binary.BigEndian.Uint16(re[26:28]); gotUDP != want {
		t.Errorf("frame %d: UDP checksum %#04x, want %#04x", i, gotUDP, want)
	}
}
