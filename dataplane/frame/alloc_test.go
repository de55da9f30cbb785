package frame

import "testing"

var sinkErr Error

func TestNoAllocs(t *testing.T) {
	v4 := frameV4TCP(t)
	v6 := frameV6Ext(t, 0, cat(extHeader(43, 1), extHeader(60, 2), extHeader(6, 1)), tcp(), payload(100))
	icmpErr := icmp4Error(t, frameV4UDP(t)[14:], 1000)
	var p, in Parsed
	addr := mapped(v4A)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Parse v4", func() { sinkErr = Parse(v4, &p) }},
		{"Parse v6 ext", func() { sinkErr = Parse(v6, &p) }},
		{"RewriteDst", func() { Parse(v4, &p); RewriteDst(v4, &p, addr, 80) }},
		{"RewriteSrc", func() { Parse(v4, &p); RewriteSrc(v4, &p, addr, 80) }},
		{"CompleteL4Checksum", func() { Parse(v6, &p); CompleteL4Checksum(v6, &p) }},
		{"SetEthernet", func() { SetEthernet(v4, [6]byte{2}, [6]byte{2, 1}) }},
		{"ICMP error", func() {
			Parse(icmpErr, &p)
			sinkErr = ParseICMPError(icmpErr, &p, &in)
			RewriteInnerSrc(icmpErr, &p, &in, addr, 1)
			RewriteInnerDst(icmpErr, &p, &in, addr, 2)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tc.fn); n != 0 {
				t.Errorf("%s allocates %v times per run, want 0", tc.name, n)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"v4tcp", frameV4TCP(b)},
		{"v6ext", frameV6Ext(b, 0, cat(extHeader(43, 1), extHeader(60, 2), extHeader(6, 1)), tcp(), payload(100))},
		{"v6fragudp", frameV6Ext(b, 44, fragHeader(17, 0, true), payload(64))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var p Parsed
			if err := Parse(bc.frame, &p); err != ErrNone && bc.name != "v6fragudp" {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				sinkErr = Parse(bc.frame, &p)
			}
		})
	}
}

func BenchmarkRewriteDst(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame []byte
		addr  [16]byte
	}{
		{"v4tcp", frameV4TCP(b), mapped(v4B)},
		{"v4udp", frameV4UDP(b), mapped(v4B)},
		{"v6tcp", frameV6TCP(b), mapped(v6B)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var p Parsed
			if err := Parse(bc.frame, &p); err != ErrNone {
				b.Fatal(err)
			}
			b.ReportAllocs()
			port := uint16(0)
			for b.Loop() {
				port++
				RewriteDst(bc.frame, &p, bc.addr, port)
			}
		})
	}
}

func BenchmarkParseRewrite(b *testing.B) {
	f := frameV4TCP(b)
	var p Parsed
	vip := mapped(v4B)
	b.ReportAllocs()
	for b.Loop() {
		Parse(f, &p)
		RewriteDst(f, &p, vip, 8080)
		SetEthernet(f, [6]byte{2, 0, 0, 0, 0, 1}, [6]byte{2, 0, 0, 0, 0, 2})
	}
}
