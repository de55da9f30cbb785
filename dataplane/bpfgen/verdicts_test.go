package bpfgen

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

var update = flag.Bool("update", false, "rewrite testdata/verdicts.golden from the programs generated now")

// TestVerdictsUnchanged runs socket filters and fanout programs of assorted specifications over a
// corpus of frames (every protocol, family, tagging, fragment, option, ICMP error and quote the
// programs tell apart, plus truncated and malformed ones) and compares each verdict with
// testdata/verdicts.golden, recorded from the programs as they were when the file was written. A
// change to how the programs are emitted must not change what they decide; one that means to
// rewrites the file with -update and says why.
func TestVerdictsUnchanged(t *testing.T) {
	corpus := verdictCorpus(t)
	var got []string
	for _, p := range verdictPrograms(t) {
		var b strings.Builder
		for _, fr := range corpus {
			b.WriteByte(p.run(t, fr))
		}
		got = append(got, p.name+" "+b.String())
	}
	path := filepath.Join("testdata", "verdicts.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: %d programs, %d frames", path, len(got), len(corpus))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to record the verdicts)", err)
	}
	defer f.Close()
	var want []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		want = append(want, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Fatalf("%d programs, the golden file has %d", len(got), len(want))
	}
	for i := range got {
		gname, gv, _ := strings.Cut(got[i], " ")
		wname, wv, _ := strings.Cut(want[i], " ")
		if gname != wname || len(gv) != len(wv) {
			t.Fatalf("program %d is %s over %d frames, the golden file has %s over %d", i, gname, len(gv), wname, len(wv))
		}
		diffs := 0
		for j := range gv {
			if gv[j] != wv[j] {
				if diffs++; diffs <= 5 {
					t.Errorf("%s, frame %d (%d bytes: % x): verdict %c, was %c", gname, j, len(corpus[j]), corpus[j], gv[j], wv[j])
				}
			}
		}
		if diffs > 5 {
			t.Errorf("%s: %d frames in all decided differently", gname, diffs)
		}
	}
}

// verdictProgram is a generated program and how to run it on a frame: its verdict as one character.
type verdictProgram struct {
	name string
	run  func(t testing.TB, fr []byte) byte
}

func verdictPrograms(t testing.TB) []verdictProgram {
	var ps []verdictProgram
	filter := func(name string, spec FilterSpec) {
		raw, err := SocketFilter(spec)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v := vm(t, raw)
		ps = append(ps, verdictProgram{"filter/" + name, func(t testing.TB, fr []byte) byte {
			n, err := v.Run(fr)
			switch {
			case err != nil:
				return 'E'
			case n == 0:
				return '-'
			case n >= len(fr):
				return '+'
			}
			return 'p' // part of the frame: no program returns that
		}})
	}
	fanout := func(name string, spec FanoutSpec, members, base int) {
		raw, err := FanoutProgramSpec(spec, members, base)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		insns, ok := bpf.Disassemble(raw)
		if !ok || insns[0] != (bpf.LoadExtension{Num: bpf.ExtProto}) {
			t.Fatalf("%s: instruction 0 is not the skb->protocol load", name)
		}
		ps = append(ps, verdictProgram{fmt.Sprintf("fanout/%s/members=%d,base=%d", name, members, base), func(t testing.TB, fr []byte) byte {
			m, ok := runFanoutVM(insns, fr)
			if !ok {
				return 'E'
			}
			const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
			if m < 0 || m >= len(digits) {
				return '?'
			}
			return digits[m]
		}})
	}

	filter("test", testSpec)
	filter("empty", FilterSpec{})
	filter("any", FilterSpec{
		VIPs:        []Endpoint{ep("198.19.0.3", 0, 0), ep("2001:2::2", 0, 0), ep("2001:2::1", 132, 0), ep("198.19.0.1", 132, 9)},
		RealServers: []Endpoint{ep("198.18.255.10", 17, 0), ep("2001:2:0:ffff::10", 0, 0), ep("198.18.1.10", 6, 0)},
	})
	var shared FilterSpec
	for i := range 40 {
		addr := fmt.Sprintf("198.19.%d.%d", i/20, i%20+1)
		shared.VIPs = append(shared.VIPs, ep(addr, 6, 80), ep(addr, 6, 443), ep(addr, 17, 53))
		shared.VIPs = append(shared.VIPs, ep(fmt.Sprintf("2001:2::%x:1", i), 6, uint16(8000+i)))
		shared.RealServers = append(shared.RealServers, ep(fmt.Sprintf("198.18.255.%d", i+1), 6, 8080),
			ep(fmt.Sprintf("2001:2:0:ffff::%x", i+1), 17, 53))
	}
	shared.VIPs = append(shared.VIPs, testSpec.VIPs...)
	shared.RealServers = append(shared.RealServers, testSpec.RealServers...)
	filter("wide", shared) // long enough for widened jumps

	vips := []netip.Addr{
		netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.7.9"),
		netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::1:1"), netip.MustParseAddr("2001:2:0:9::1"),
	}
	for _, mb := range [][2]int{{1, 0}, {2, 0}, {3, 0}, {4, 0}, {3, 3}, {2, 2}} {
		fanout("plain", FanoutSpec{VIPs: vips}, mb[0], mb[1])
	}
	fanout("none", FanoutSpec{}, 3, 0)
	sticky := func(addr string, proto uint8, port uint16, bits int) EndpointRule {
		return EndpointRule{Endpoint{netip.MustParseAddr(addr), proto, port}, HashRule{Sticky: true, Bits: bits}}
	}
	plainRule := func(addr string, proto uint8, port uint16) EndpointRule {
		return EndpointRule{Endpoint: Endpoint{netip.MustParseAddr(addr), proto, port}}
	}
	rules := FanoutSpec{
		VIPs: vips,
		VIPRules: []EndpointRule{
			sticky("198.19.0.1", 6, 80, 24), plainRule("198.19.0.1", 6, 443),
			sticky("198.19.0.2", 17, 0, 16), plainRule("198.19.0.2", 17, 53),
			sticky("198.19.7.9", 132, 0, 32), sticky("198.19.7.9", 6, 0, 0),
			sticky("2001:2::1", 6, 80, 56), sticky("2001:2::1", 17, 0, 48), plainRule("2001:2::1", 17, 53),
			sticky("2001:2:0:9::1", 6, 443, 128), sticky("2001:2::1:1", 6, 443, 0),
		},
		ServerRules: []EndpointRule{
			sticky("198.18.255.10", 6, 8080, 24), sticky("198.18.255.11", 17, 0, 16), plainRule("198.18.255.11", 17, 53),
			sticky("198.19.0.2", 6, 443, 20),
			sticky("2001:2:0:ffff::10", 6, 8080, 56), sticky("2001:2:0:ffff::11", 17, 0, 64), sticky("2001:2:0:ffff::12", 6, 22, 1),
		},
	}
	for _, mb := range [][2]int{{4, 0}, {3, 3}, {1, 0}} {
		fanout("rules", rules, mb[0], mb[1])
	}
	return ps
}

// runFanoutVM is runFanout for a disassembled program, without a testing.TB: the member, or false
// if the VM failed.
func runFanoutVM(insns []bpf.Instruction, fr []byte) (int, bool) {
	if len(fr) < 14 {
		return 0, true // the kernel runs no fanout program on a frame without a link-layer header
	}
	proto := binary.BigEndian.Uint16(fr[12:])
	data := fr[14:]
	if (proto == etherType8021Q || proto == etherType8021AD) && len(fr) >= 18 {
		proto = binary.BigEndian.Uint16(fr[16:])
		data = fr[18:]
	}
	prog := append([]bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: uint32(proto)}}, insns[1:]...)
	v, err := bpf.NewVM(prog)
	if err != nil {
		return 0, false
	}
	n, err := v.Run(data)
	return n, err == nil
}

// verdictCorpus returns the frames TestVerdictsUnchanged runs, the same every run.
func verdictCorpus(t testing.TB) [][]byte {
	r := rand.New(rand.NewPCG(12, 2024))
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	v4 := []string{"198.19.0.1", "198.19.0.2", "198.19.0.3", "198.19.7.9", "198.19.0.99", "198.19.1.5",
		"198.18.1.10", "198.18.255.10", "198.18.255.11", "198.18.0.100", "198.18.3.4", "198.18.254.1"}
	v6 := []string{"2001:2::1", "2001:2::1:1", "2001:2::2", "2001:2:0:9::1", "2001:2::9", "2001:2::5:1",
		"2001:2:0:1::10", "2001:2:0:ffff::10", "2001:2:0:ffff::11", "2001:2:0:ffff::12", "2001:2::100", "2001:2:0:3::4"}
	ports := []uint16{80, 443, 53, 8080, 8443, 22, 9, 0, 8000, 8005, 40000}
	port := func() uint16 {
		if r.IntN(4) == 0 {
			return uint16(1 + r.IntN(65535))
		}
		return ports[r.IntN(len(ports))]
	}
	tagSets := [][]layers.EthernetType{
		nil, nil, nil, nil,
		{layers.EthernetTypeDot1Q},
		{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q},
		{layers.EthernetTypeQinQ},
		{layers.EthernetTypeDot1Q, layers.EthernetTypeDot1Q, layers.EthernetTypeDot1Q},
	}
	// random returns a TCP, UDP, SCTP or other-protocol frame, or an ICMP message (an error
	// quoting another random frame, or not).
	var random func(depth int, six bool) frame
	random = func(depth int, six bool) frame {
		addrs := v4
		icmp := uint8(1)
		if six {
			addrs, icmp = v6, 58
		}
		f := frame{src: pick(addrs...), dst: pick(addrs...), sport: port(), dport: port()}
		f.proto = []uint8{6, 6, 17, 17, 132, 47, icmp, icmp}[r.IntN(8)]
		if !six {
			f.ipv4Opts = r.IntN(4) == 0
			if r.IntN(6) == 0 {
				f.fragOffset = uint16(1 + r.IntN(200))
			}
		} else {
			f.hopByHop = r.IntN(6) == 0
		}
		if f.proto == icmp && depth == 0 {
			q := random(1, r.IntN(5) != 0 == six)
			types := []uint8{3, 11, 12, 5, 0, 8}
			if six {
				types = []uint8{1, 2, 3, 4, 128, 129, 137}
			}
			f.icmp = icmpError(t, types[r.IntN(len(types))], q, r.IntN(2) == 0)
		}
		return f
	}
	var corpus [][]byte
	add := func(b []byte) { corpus = append(corpus, b) }
	for range 2400 {
		six := r.IntN(2) == 0
		f := random(0, six)
		f.tags = tagSets[r.IntN(len(tagSets))]
		b := f.build(t)
		l3 := 14 + 4*len(f.tags)
		switch r.IntN(12) {
		case 0: // cut anywhere
			b = b[:r.IntN(len(b)+1)]
		case 1: // cut in or right after the IP header
			b = b[:min(len(b), l3+r.IntN(50))]
		case 2: // another IP version, or (IPv4) a short IHL
			b[l3] = b[l3]&0x0f | byte(r.IntN(16))<<4
		case 3:
			if !six {
				b[l3] = 0x40 | byte(r.IntN(6))
			}
		case 4: // a first fragment (more fragments set)
			if !six {
				b[l3+6] |= 0x20
			}
		case 5: // an unknown EtherType
			binary.BigEndian.PutUint16(b[l3-2:], []uint16{0x88cc, 0x0806, 0x8847}[r.IntN(3)])
		}
		add(b)
	}
	// Connections of the services the rule programs know: the forward frame, the reply, and ICMP
	// errors about either, from random clients.
	type service struct {
		vip, server  string
		vport, sport uint16 // 0: any
		proto        uint8
	}
	for range 150 {
		s := []service{
			{"198.19.0.1", "198.18.255.10", 80, 8080, 6}, {"198.19.0.1", "198.18.1.10", 443, 443, 6},
			{"198.19.0.2", "198.18.255.11", 0, 0, 17}, {"198.19.0.2", "198.19.0.2", 443, 443, 6},
			{"198.19.7.9", "198.18.255.10", 0, 0, 132}, {"198.19.7.9", "198.18.255.12", 0, 0, 6},
			{"2001:2::1", "2001:2:0:ffff::10", 80, 8080, 6}, {"2001:2::1", "2001:2:0:ffff::11", 0, 0, 17},
			{"2001:2:0:9::1", "2001:2:0:ffff::12", 443, 22, 6}, {"2001:2::1:1", "2001:2::1:1", 443, 443, 6},
		}[r.IntN(10)]
		six := strings.Contains(s.vip, ":")
		client, router, icmp := fmt.Sprintf("198.%d.%d.%d", 18+r.IntN(2), r.IntN(256), 1+r.IntN(254)), "198.18.254.1", uint8(1)
		errTypes := []uint8{3, 11, 12}
		if six {
			client = fmt.Sprintf("2001:2:%x:%x::%x", r.IntN(4), r.IntN(1<<16), 1+r.IntN(1<<16-1))
			router, icmp, errTypes = "2001:2:0:fffe::1", 58, []uint8{1, 2, 3, 4}
		}
		cport, vport, sport := uint16(1024+r.IntN(60000)), s.vport, s.sport
		if vport == 0 {
			vport = uint16(1 + r.IntN(65535))
		}
		if sport == 0 {
			sport = vport
		}
		opts := func() bool { return !six && r.IntN(3) == 0 }
		var frag uint16
		if !six && r.IntN(8) == 0 {
			frag = uint16(1 + r.IntN(100))
		}
		tags := tagSets[r.IntN(len(tagSets))]
		fwd := frame{src: client, dst: s.vip, proto: s.proto, sport: cport, dport: vport, tags: tags, ipv4Opts: opts(), fragOffset: frag}
		rep := frame{src: s.server, dst: client, proto: s.proto, sport: sport, dport: cport, tags: tags, ipv4Opts: opts(), fragOffset: frag}
		aboutRep := frame{src: router, dst: s.vip, proto: icmp, tags: tags, ipv4Opts: opts(),
			icmp: icmpError(t, errTypes[r.IntN(len(errTypes))], frame{src: s.vip, dst: client, proto: s.proto, sport: vport, dport: cport, ipv4Opts: opts()}, r.IntN(2) == 0)}
		aboutFwd := frame{src: s.server, dst: client, proto: icmp, tags: tags, ipv4Opts: opts(),
			icmp: icmpError(t, errTypes[r.IntN(len(errTypes))], frame{src: client, dst: s.server, proto: s.proto, sport: cport, dport: sport, ipv4Opts: opts()}, r.IntN(2) == 0)}
		for _, f := range []frame{fwd, rep, aboutRep, aboutFwd} {
			add(f.build(t))
		}
	}
	add(arpFrame(t))
	add(nil)
	add([]byte{1, 2, 3})
	return corpus
}
