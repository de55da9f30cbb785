package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Capture is a pcap or pcapng file held in memory: every frame's bytes in one arena, so that a
// replay of millions of frames costs the GC nothing to scan.
type Capture struct {
	data []byte
	pkts []capPkt
}

type capPkt struct {
	off  int64
	n    uint32 // bytes captured
	wire uint32 // length on the wire (> n when the capture was cut short by its snap length)
	ts   int64  // Unix nanoseconds
}

// Len returns the number of frames.
func (c *Capture) Len() int { return len(c.pkts) }

// Frame returns frame i's bytes (owned by the Capture: do not modify) and its length on the wire.
func (c *Capture) Frame(i int) ([]byte, int) {
	p := c.pkts[i]
	return c.data[p.off : p.off+int64(p.n) : p.off+int64(p.n)], int(p.wire)
}

// Bytes returns the total captured bytes.
func (c *Capture) Bytes() int64 { return int64(len(c.data)) }

// ReadCaptureFile reads a pcap or pcapng file of Ethernet frames.
func ReadCaptureFile(path string) (*Capture, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open capture: %w", err)
	}
	defer f.Close()
	c, err := ReadCapture(f)
	if err != nil {
		return nil, fmt.Errorf("failed to read capture %s: %w", path, err)
	}
	return c, nil
}

// ReadCapture reads a pcap or pcapng stream (told apart by its magic number) of Ethernet frames.
func ReadCapture(r io.Reader) (*Capture, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("not a pcap or pcapng file (too short): %w", err)
	}
	type source interface {
		ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
		LinkType() layers.LinkType
	}
	var src source
	if magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d && magic[3] == 0x0a {
		ng, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, fmt.Errorf("failed to read the pcapng header: %w", err)
		}
		src = ng
	} else {
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("failed to read the pcap header (is it a pcap or pcapng file?): %w", err)
		}
		src = pr
	}
	if lt := src.LinkType(); lt != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("link type %v is not supported; capture Ethernet frames (e.g. tcpdump -i eth0, not -i any)", lt)
	}
	c := &Capture{}
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("frame %d: %w", len(c.pkts)+1, err)
		}
		if len(c.pkts) >= 1<<31 {
			return nil, fmt.Errorf("more than %d frames; split the capture", 1<<31)
		}
		wire := max(ci.Length, len(data))
		c.pkts = append(c.pkts, capPkt{off: int64(len(c.data)), n: uint32(len(data)), wire: uint32(wire), ts: ci.Timestamp.UnixNano()})
		c.data = append(c.data, data...)
	}
	return c, nil
}

// newPcapWriter starts a pcap file of Ethernet frames with nanosecond timestamps.
func newPcapWriter(w io.Writer) (*pcapgo.Writer, error) {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		return nil, fmt.Errorf("failed to write the capture header: %w", err)
	}
	return pw, nil
}
