package lab

import (
	"fmt"
	"io"
)

// patternByte is byte off of the deterministic stream served on /bytes. It mixes the higher bytes
// of the offset in, so a chunk delivered at the wrong place does not look right by accident.
func patternByte(off int64) byte {
	return byte(off) ^ byte(off>>8)*7 ^ byte(off>>16)*13 ^ byte(off>>24)*29
}

// FillPattern fills p with the pattern starting at stream offset off.
func FillPattern(p []byte, off int64) {
	for i := range p {
		p[i] = patternByte(off + int64(i))
	}
}

// VerifyPattern reads r to EOF and checks that it is exactly the first n bytes of the pattern.
func VerifyPattern(r io.Reader, n int64) error {
	buf := make([]byte, 64<<10)
	var off int64
	for {
		k, err := r.Read(buf)
		for i := 0; i < k; i++ {
			if off+int64(i) >= n {
				return fmt.Errorf("stream longer than the %d bytes expected", n)
			}
			if buf[i] != patternByte(off+int64(i)) {
				return fmt.Errorf("stream corrupt at offset %d: got %#02x, want %#02x", off+int64(i), buf[i], patternByte(off+int64(i)))
			}
		}
		off += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("failed to read stream after %d of %d bytes: %w", off, n, err)
		}
	}
	if off != n {
		return fmt.Errorf("stream ended after %d of %d bytes", off, n)
	}
	return nil
}
