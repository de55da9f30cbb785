package sched

import (
	"encoding/binary"
	"testing"

	"github.com/govs/govs/flow"
)

// FuzzPick feeds packet-derived flows and arbitrary server states to every scheduler: Pick must not
// panic and must return -1 or a usable server.
func FuzzPick(f *testing.F) {
	f.Add([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"+
		"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x50\x1f\x90\x06"), uint8(3), []byte{1, 0, 3, 5})
	f.Add([]byte{}, uint8(0), []byte{})
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xc6\x12\x00\x01"), uint8(0xff), []byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, tuple []byte, mask uint8, weights []byte) {
		var fl flow.Tuple
		buf := make([]byte, 37)
		copy(buf, tuple)
		copy(fl.Src[:], buf[0:16])
		copy(fl.Dst[:], buf[16:32])
		fl.SrcPort = binary.BigEndian.Uint16(buf[32:])
		fl.DstPort = binary.BigEndian.Uint16(buf[34:])
		fl.Proto = buf[36]
		if len(weights) > 32 {
			weights = weights[:32]
		}
		d := make([]Dest, len(weights))
		for i, w := range weights {
			d[i] = Dest{Addr: v4(198, 18, 0, w), Weight: int32(w % 8), Available: mask&(1<<(i%8)) != 0, Counts: new(Counts)}
			d[i].Counts.Active.Store(int64(w % 3))
			if w%5 == 0 {
				d[i].UpperThreshold = uint32(w % 4)
			}
		}
		for _, name := range Names() {
			opts := Options{Flags: FlagsFor(name)}
			if name == "mh" {
				opts.MHTableSize = 251
			}
			s := mustNew(t, name, d, opts)
			for range 3 {
				i := s.Pick(d, &fl)
				if i < -1 || i >= len(d) {
					t.Fatalf("%s: Pick = %d of %d servers", name, i, len(d))
				}
				if i >= 0 && (!d[i].Available || d[i].Weight <= 0 || Overloaded(&d[i])) {
					t.Fatalf("%s: picked unusable server %d %+v", name, i, d[i])
				}
			}
		}
	})
}

// FuzzParseFlag checks that parsed flags print back to themselves.
func FuzzParseFlag(f *testing.F) {
	for _, s := range []string{"sh-fallback", "sh-port,sh-fallback", "mh-port", "", ",", "mh-fallback,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := ParseFlag(s)
		if err != nil {
			return
		}
		if back, err := ParseFlag(fl.String()); err != nil || back != fl {
			t.Fatalf("ParseFlag(%q) = %v, but ParseFlag(%q) = %v, %v", s, fl, fl.String(), back, err)
		}
	})
}
