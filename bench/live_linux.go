package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/net/bpf"

	"github.com/govs/govs/dataplane/afpacket"
)

// rejectAll is a socket filter that accepts nothing: the socket only transmits, so its RX ring
// must not fill up with (and the kernel must not copy) every frame on the link.
var rejectAll = []bpf.RawInstruction{{Op: 0x06, K: 0}} // ret #0

// Live transmits c onto lc.Interface through a TPACKETv3 TX ring, paced at lc.PPS or at top
// speed, until the loops are done, lc.Duration passes or ctx ends.
func Live(ctx context.Context, c *Capture, lc LiveConfig) (*LiveReport, error) {
	if c.Len() == 0 {
		return nil, errors.New("the capture has no frames")
	}
	if lc.PPS < 0 {
		return nil, fmt.Errorf("pps must be positive, not %v", lc.PPS)
	}
	if lc.PPS == 0 {
		lc.TopSpeed = true
	}
	loops := lc.Loops
	if loops <= 0 {
		loops = 1
		if lc.Duration > 0 {
			loops = int(^uint(0) >> 1)
		}
	}
	s, err := afpacket.Open(afpacket.Config{Interface: lc.Interface, Filter: rejectAll, QdiscBypass: lc.TopSpeed})
	if err != nil {
		return nil, fmt.Errorf("failed to open a TX ring on %s (run as root, and check the interface exists): %w", lc.Interface, err)
	}
	defer s.Close()
	rep := &LiveReport{Interface: lc.Interface}
	if !lc.TopSpeed {
		rep.RequestedPPS = lc.PPS
	}
	var committed, sent uint64
	kick := func() {
		n, err := s.Flush()
		sent += uint64(n)
		if err != nil {
			rep.Errors++
		}
	}
	start := time.Now()
	deadline := time.Time{}
	if lc.Duration > 0 {
		deadline = start.Add(lc.Duration)
	}
	const burst = 64 // frames queued before a kick when paced
	stop := false
	for loop := 0; loop < loops && !stop; loop++ {
		for i := 0; i < c.Len() && !stop; i++ {
			f, _ := c.Frame(i)
			if committed%burst == 0 {
				now := time.Now()
				if !deadline.IsZero() && now.After(deadline) || ctx.Err() != nil {
					stop = true
					break
				}
				if !lc.TopSpeed {
					// Frame number committed is due at start + committed/PPS.
					due := start.Add(time.Duration(float64(committed) / lc.PPS * float64(time.Second)))
					if d := due.Sub(now); d > 0 {
						kick()
						time.Sleep(d)
					}
				}
			}
			buf := s.TxFrame()
			for tries := 0; buf == nil && tries < 10000; tries++ {
				kick()
				if buf = s.TxFrame(); buf == nil {
					time.Sleep(20 * time.Microsecond)
				}
			}
			if buf == nil {
				return nil, fmt.Errorf("the TX ring of %s stayed full for 200ms; is the link up?", lc.Interface)
			}
			if len(f) > len(buf) {
				rep.TooLarge++
				continue
			}
			n := copy(buf, f)
			s.TxCommit(n, afpacket.VnetHdr{})
			committed++
			rep.Bytes += uint64(n)
			if !lc.TopSpeed && committed%burst == 0 {
				kick()
			}
		}
	}
	for tries := 0; sent < committed && tries < 1000; tries++ {
		kick()
		if sent < committed {
			time.Sleep(time.Millisecond)
		}
	}
	el := time.Since(start)
	rep.Frames = sent
	rep.Unsent = committed - sent
	rep.Seconds = el.Seconds()
	if rep.Seconds > 0 {
		rep.PPS = float64(sent) / rep.Seconds
		rep.Mbps = float64(rep.Bytes) * 8 / rep.Seconds / 1e6
	}
	return rep, nil
}
