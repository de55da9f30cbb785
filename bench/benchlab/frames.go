package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/govs/govs/internal/checksum"
)

// Frame layout of the UDP flood: Ethernet II, IPv4 without options, UDP.
const (
	ethHeaderLen  = 14
	ipv4HeaderLen = 20
	udpHeaderLen  = 8
	// minFrameLen is the smallest frame we build: every header, no payload.
	minFrameLen = ethHeaderLen + ipv4HeaderLen + udpHeaderLen
)

// flowSpec says which frames the generator sends: one flow per source port in
// [FirstPort, FirstPort+Flows), all from Src to Dst:DstPort.
type flowSpec struct {
	SrcMAC, DstMAC net.HardwareAddr
	Src, Dst       netip.Addr // IPv4 only
	DstPort        uint16
	FirstPort      uint16
	Flows          int
	FrameLen       int // bytes handed to the device, Ethernet header included, no FCS
}

// buildFrames returns one pre-built frame per flow, all in one backing array so the
// generator's working set is a single contiguous block.
func buildFrames(s flowSpec) ([][]byte, error) {
	switch {
	case len(s.SrcMAC) != 6 || len(s.DstMAC) != 6:
		return nil, fmt.Errorf("failed to build frames: MACs %v -> %v are not Ethernet addresses", s.SrcMAC, s.DstMAC)
	case !s.Src.Is4() || !s.Dst.Is4():
		return nil, fmt.Errorf("failed to build frames: %v -> %v: only IPv4 is generated", s.Src, s.Dst)
	case s.FrameLen < minFrameLen || s.FrameLen > 1514:
		return nil, fmt.Errorf("failed to build frames: frame length %d outside %d..1514", s.FrameLen, minFrameLen)
	case s.Flows < 1 || int(s.FirstPort)+s.Flows > 65536 || s.FirstPort == 0:
		return nil, fmt.Errorf("failed to build frames: %d flows from source port %d do not fit in 1..65535", s.Flows, s.FirstPort)
	}
	backing := make([]byte, s.Flows*s.FrameLen)
	frames := make([][]byte, s.Flows)
	for i := range frames {
		f := backing[i*s.FrameLen : (i+1)*s.FrameLen : (i+1)*s.FrameLen]
		writeFrame(f, s, s.FirstPort+uint16(i), uint16(i))
		frames[i] = f
	}
	return frames, nil
}

// writeFrame fills f (len(f) == s.FrameLen) with one UDP datagram from srcPort.
func writeFrame(f []byte, s flowSpec, srcPort, ipID uint16) {
	copy(f[0:6], s.DstMAC)
	copy(f[6:12], s.SrcMAC)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)

	ip := f[ethHeaderLen : ethHeaderLen+ipv4HeaderLen]
	ipLen := len(f) - ethHeaderLen
	ip[0] = 0x45 // version 4, IHL 5
	ip[1] = 0
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipLen))
	binary.BigEndian.PutUint16(ip[4:6], ipID)
	binary.BigEndian.PutUint16(ip[6:8], 0x4000) // DF
	ip[8] = 64                                  // TTL
	ip[9] = 17                                  // UDP
	ip[10], ip[11] = 0, 0
	src, dst := s.Src.As4(), s.Dst.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum.IPv4Header(ip))

	udp := f[ethHeaderLen+ipv4HeaderLen:]
	binary.BigEndian.PutUint16(udp[0:2], srcPort)
	binary.BigEndian.PutUint16(udp[2:4], s.DstPort)
	binary.BigEndian.PutUint16(udp[4:6], uint16(len(udp)))
	udp[6], udp[7] = 0, 0
	payload := udp[udpHeaderLen:]
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	binary.BigEndian.PutUint16(udp[6:8], checksum.Transport(src[:], dst[:], 17, udp))
}
