package frame

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/govs/govs/internal/checksum"
)

// TestPartialL4Checksum: a finished TCP or UDP checksum is not partial; the same frame with the
// field set to the pseudo-header sum, as a local sender leaves it, is, and CompleteL4Checksum
// turns it back into the finished one.
func TestPartialL4Checksum(t *testing.T) {
	for name, build := range map[string]func(testing.TB) []byte{
		"v4 tcp": frameV4TCP, "v4 udp": frameV4UDP, "v6 tcp": frameV6TCP, "v6 udp": frameV6UDP,
	} {
		t.Run(name, func(t *testing.T) {
			full := build(t)
			var p Parsed
			if err := Parse(full, &p); err != ErrNone {
				t.Fatal(err)
			}
			if PartialL4Checksum(full, &p) {
				t.Fatal("a finished checksum reads as partial")
			}
			off := p.L4Off + 16
			if p.Proto == ProtoUDP {
				off = p.L4Off + 6
			}
			partial := bytes.Clone(full)
			binary.BigEndian.PutUint16(partial[off:], checksum.Fold32(pseudoHeaderSum(p.Family, &p.Src, &p.Dst, p.Proto, p.End-p.L4Off)))
			if !PartialL4Checksum(partial, &p) {
				t.Fatal("a partial checksum reads as finished")
			}
			CompleteL4Checksum(partial, &p)
			if !bytes.Equal(partial, full) {
				t.Fatalf("completed % x, want % x", partial[off:off+2], full[off:off+2])
			}
			if p.Proto == ProtoUDP {
				none := bytes.Clone(full)
				none[off], none[off+1] = 0, 0
				if PartialL4Checksum(none, &p) {
					t.Fatal("UDP without a checksum (0) reads as partial")
				}
			}
		})
	}
}
