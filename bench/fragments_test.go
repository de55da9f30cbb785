package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/govs/govs/dataplane/dataplanetest"
	"github.com/govs/govs/internal/checksum"
)

// fragmentedFlows is how many datagrams fragmentedCapture holds.
const fragmentedFlows = 200

// fragmentedCapture is a pcap capture of fragmentedFlows UDP datagrams of 3000 and 9000
// bytes from 20 clients, fragmented at a 1500-byte MTU as their kernels would, half IPv4 to the
// NAT service 198.18.0.100:53, each answered as large (a fragmented reply from the VIP, as a
// client-side capture shows it), half IPv6 to the DR service [2001:2::100]:0. Every fifth
// datagram arrives last fragment first.
func fragmentedCapture(t *testing.T) *Capture {
	var frames []capFrame
	for i := range fragmentedFlows {
		size := 3000
		if i%4 >= 2 {
			size = 9000
		}
		payload := make([]byte, size)
		for j := range payload {
			payload[j] = byte(i + j*7)
		}
		port := uint16(30000 + i)
		var req, rep []byte
		if i%2 == 0 {
			h := ip4(layers.IPProtocolUDP)
			h.SrcIP = net.IP{198, 18, 128, byte(10 + i%20)}
			req = build(t, eth(layers.EthernetTypeIPv4), h, udp(h, port, 53), gopacket.Payload(payload))
			r := ip4(layers.IPProtocolUDP)
			r.SrcIP, r.DstIP = tVIP4, h.SrcIP
			e := eth(layers.EthernetTypeIPv4)
			e.SrcMAC, e.DstMAC = e.DstMAC, e.SrcMAC
			rep = build(t, e, r, udp(r, 53, port), gopacket.Payload(payload))
		} else {
			h := ip6(layers.IPProtocolUDP)
			h.SrcIP = net.ParseIP(fmt.Sprintf("2001:2:0:1::%x", 10+i%20))
			req = build(t, eth(layers.EthernetTypeIPv6), h, udp(h, port, 5353), gopacket.Payload(payload))
		}
		frags := dataplanetest.Fragment(req, 1500, uint32(i+1))
		if i%5 == 4 {
			slices.Reverse(frags)
		}
		if rep != nil {
			frags = append(frags, dataplanetest.Fragment(rep, 1500, uint32(1000+i))...)
		}
		for _, f := range frags {
			frames = append(frames, capFrame{b: f, at: time.Duration(len(frames)) * time.Microsecond})
		}
	}
	c, err := ReadCapture(bytes.NewReader(encodeCapture(t, frames)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReplayFragmented replays fragmentedCapture with one and two workers: every fragment is forwarded, none dropped; all fragments of each datagram reach one
// real server and reassemble, with a valid UDP checksum, into the whole datagram; under NAT the
// fragmented answers leave from the VIP, whole too.
func TestReplayFragmented(t *testing.T) {
	cfg := loadConfig(t, "testdata/bench.toml")
	c := fragmentedCapture(t)
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			var out bytes.Buffer
			rep, err := Replay(c, ReplayConfig{Config: cfg, Workers: workers, Out: &out})
			if err != nil {
				t.Fatal(err)
			}
			accounted(t, rep)
			if rep.DroppedTotal != 0 || rep.StickyViolations != 0 {
				t.Errorf("dropped %v, %d sticky violations; want none", rep.Dropped, rep.StickyViolations)
			}
			sent, err := ReadCapture(&out)
			if err != nil {
				t.Fatal(err)
			}
			type key struct {
				client string
				id     uint32
			}
			toReal := map[key][][]byte{}
			back := map[key][][]byte{}
			for i := 0; i < sent.Len(); i++ {
				f, _ := sent.Frame(i)
				f = slices.Clone(f)
				src, dst, id := fragFields(t, f)
				if _, ok := realOfMAC(f); ok {
					toReal[key{src.String(), id}] = append(toReal[key{src.String(), id}], f)
				} else {
					if !src.Equal(tVIP4) {
						t.Fatalf("reply fragment from %v, want the VIP", src)
					}
					back[key{dst.String(), id}] = append(back[key{dst.String(), id}], f)
				}
			}
			if len(toReal) != fragmentedFlows || len(back) != fragmentedFlows/2 {
				t.Fatalf("%d datagrams reached real servers, %d answers came back; want %d and %d", len(toReal), len(back), fragmentedFlows, fragmentedFlows/2)
			}
			for k, frags := range toReal {
				for _, f := range frags[1:] {
					if !bytes.Equal(f[:6], frags[0][:6]) {
						t.Fatalf("datagram %v: fragments to %x and %x", k, frags[0][:6], f[:6])
					}
				}
				checkDatagram(t, frags)
			}
			for _, frags := range back {
				checkDatagram(t, frags)
			}
		})
	}
}

// fragFields returns a fragment's addresses and identification.
func fragFields(t *testing.T, f []byte) (src, dst net.IP, id uint32) {
	ip := f[14:]
	if ip[0]>>4 == 4 {
		return net.IP(ip[12:16]), net.IP(ip[16:20]), uint32(binary.BigEndian.Uint16(ip[4:]))
	}
	if ip[6] != 44 {
		t.Fatalf("an IPv6 frame without a Fragment header was sent: next header %d", ip[6])
	}
	return net.IP(ip[8:24]), net.IP(ip[24:40]), binary.BigEndian.Uint32(ip[44:])
}

// checkDatagram reassembles frags and checks the UDP length and checksum of the whole.
func checkDatagram(t *testing.T, frags [][]byte) {
	t.Helper()
	whole, err := dataplanetest.Reassemble(frags)
	if err != nil {
		t.Fatal(err)
	}
	ip := whole[14:]
	var pseudo []byte
	var l4 []byte
	if ip[0]>>4 == 4 {
		l4 = ip[20:]
		pseudo = append(append(slices.Clone(ip[12:20]), 0, 17), byte(len(l4)>>8), byte(len(l4)))
	} else {
		l4 = ip[40:]
		pseudo = append(slices.Clone(ip[8:40]), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, 17)
	}
	if n := int(binary.BigEndian.Uint16(l4[4:])); n != len(l4) || (n != 3008 && n != 9008) {
		t.Fatalf("reassembled UDP length %d, payload %d", n, len(l4))
	}
	if s := checksum.Sum(l4, uint32(checksum.Sum(pseudo, 0))); s != 0xffff {
		t.Fatalf("reassembled datagram's UDP checksum is wrong (sum %#x)", s)
	}
}
