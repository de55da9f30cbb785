//go:build linux

package afpacket

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// gsoObservation summarises what a Socket saw of a TCP stream.
type gsoObservation struct {
	frames, gso, truncated int
	maxLen, maxSnap        uint32
	gsoSizes               map[uint16]int
	gsoTypes               map[uint8]int
	status                 map[uint32]int
	example                RxMeta
}

func (o gsoObservation) String() string {
	return fmt.Sprintf("frames=%d gso=%d truncated=%d maxLen=%d maxCaptured=%d gsoSizes=%v gsoTypes=%v statusBits=%v example=%+v",
		o.frames, o.gso, o.truncated, o.maxLen, o.maxSnap, o.gsoSizes, o.gsoTypes, o.status, o.example)
}

// tcpStream sends size bytes over TCP from nsA (198.18.0.1) to a server in nsB (198.18.0.2)
// and returns when the server has read them all.
func tcpStream(t *testing.T, nsA, nsB, srv string, size int) time.Duration {
	t.Helper()
	var ln net.Listener
	inNS(t, nsB, func() (err error) {
		ln, err = net.Listen("tcp4", srv)
		return err
	})
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	var c net.Conn
	inNS(t, nsA, func() (err error) {
		c, err = net.DialTimeout("tcp4", srv, 5*time.Second)
		return err
	})
	start := time.Now()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 256<<10)
	for sent := 0; sent < size; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			t.Fatalf("TCP write after %d bytes: %v", sent, err)
		}
	}
	c.Close()
	if n := <-got; n < int64(size) {
		t.Fatalf("server read %d bytes, want %d", n, size)
	}
	return time.Since(start)
}

// TestGSOReceive shows what a TPACKETv3 RX ring gets from a veth peer using TSO: whole
// 64 KiB GSO frames with virtio_net_hdr when VnetHdr is on and the block is large enough,
// and frames truncated to the block (tp_len > tp_snaplen) otherwise.
func TestGSOReceive(t *testing.T) {
	tests := []struct {
		name          string
		cfg           Config
		wantVnet      bool // GSO info present
		wantTruncated bool
	}{
		{"vnet-default-128k", Config{VnetHdr: true}, true, false},
		// 64 KiB blocks hold the 65226-byte frames of MSS 1448 (65396 bytes fit), but not
		// every legal GSO frame (up to 65549): 32 KiB blocks show the truncation with vnet.
		{"vnet-64k-blocks", Config{VnetHdr: true, BlockSize: 64 << 10}, true, false},
		{"vnet-32k-blocks", Config{VnetHdr: true, BlockSize: 32 << 10}, true, true},
		{"novnet-4k-blocks", Config{}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireRoot(t)
			nsA, nsB := newNS(t), newNS(t)
			p := newVeth(t, nsA, nsB, "198.18.0.1/24", "198.18.0.2/24")
			cfg := tt.cfg
			cfg.Interface = p.B
			s := openIn(t, nsB, cfg)

			obs := gsoObservation{gsoSizes: map[uint16]int{}, gsoTypes: map[uint8]int{}, status: map[uint32]int{}}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					f, m, ok := s.Next()
					if !ok {
						select {
						case <-stop:
							return
						default:
						}
						s.Wait(5 * time.Millisecond)
						continue
					}
					if len(f) < 14 || f[12] != 0x08 || f[13] != 0x00 {
						continue // IPv4 only
					}
					obs.frames++
					obs.maxLen = max(obs.maxLen, m.Len)
					obs.maxSnap = max(obs.maxSnap, uint32(len(f)))
					if uint32(len(f)) < m.Len {
						obs.truncated++
					}
					for bit := uint32(1); bit <= StatusGSOTCP; bit <<= 1 {
						if m.Status&bit != 0 {
							obs.status[bit]++
						}
					}
					if m.Vnet.GSOSize != 0 {
						obs.gso++
						obs.gsoSizes[m.Vnet.GSOSize]++
						obs.gsoTypes[m.Vnet.GSOType]++
						obs.example = *m
					}
				}
			}()
			d := tcpStream(t, nsA, nsB, "198.18.0.2:5001", 8<<20)
			time.Sleep(20 * time.Millisecond) // let the last block retire
			close(stop)
			wg.Wait()
			st, _ := s.Stats()
			t.Logf("8 MiB in %v: %v; stats %+v", d, obs, st)
			if obs.maxLen <= 1514 {
				t.Fatalf("no frame above the MTU arrived (max %d): the sender did not use TSO", obs.maxLen)
			}
			if got := obs.gso > 0; got != tt.wantVnet {
				t.Errorf("frames with gso_size: %d, want some = %v", obs.gso, tt.wantVnet)
			}
			if got := obs.truncated > 0; got != tt.wantTruncated {
				t.Errorf("truncated frames: %d, want some = %v", obs.truncated, tt.wantTruncated)
			}
		})
	}
}

// forwardL2 bridges two Sockets in both directions, frame by frame through the TX rings,
// passing the received virtio_net_hdr on, until stop is closed. It is the data plane's
// forward path reduced to a copy.
func forwardL2(a, b *Socket, stop <-chan struct{}) (fwd, dropped int) {
	fds := []unix.PollFd{{Fd: int32(a.Fd()), Events: unix.POLLIN}, {Fd: int32(b.Fd()), Events: unix.POLLIN}}
	move := func(from, to *Socket) {
		for range 64 {
			f, m, ok := from.Next()
			if !ok {
				break
			}
			buf := to.TxFrame()
			if buf == nil || uint32(len(f)) < m.Len || len(f) > len(buf) {
				dropped++
				continue
			}
			to.TxCommit(copy(buf, f), m.Vnet)
			fwd++
		}
		to.Flush()
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		unix.Poll(fds, 2)
		move(a, b)
		move(b, a)
	}
}

// TestGSOForward forwards a TCP stream through a user-space L2 bridge of two TPACKETv3
// sockets with VnetHdr: GSO frames go out of the TX ring whole, with their virtio_net_hdr.
func TestGSOForward(t *testing.T) {
	tests := []struct {
		name string
		vnet bool
	}{
		{"vnet", true},
		{"novnet", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireRoot(t)
			nsA, nsF, nsC := newNS(t), newNS(t), newNS(t)
			left := newVeth(t, nsA, nsF, "198.18.0.1/24", "")
			right := newVeth(t, nsF, nsC, "", "198.18.0.2/24")
			a := openIn(t, nsF, Config{Interface: left.B, VnetHdr: tt.vnet})
			b := openIn(t, nsF, Config{Interface: right.A, VnetHdr: tt.vnet})
			stop := make(chan struct{})
			var fwd, dropped int
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); fwd, dropped = forwardL2(a, b, stop) }()
			stopFwd := sync.OnceFunc(func() { close(stop); wg.Wait() })
			defer stopFwd()

			if !tt.vnet {
				// Frames from a veth peer carry a partial TCP checksum (CHECKSUM_PARTIAL,
				// TP_STATUS_CSUMNOTREADY), even the SYN. Sent on without a vnet header
				// asking for VIRTIO_NET_HDR_F_NEEDS_CSUM, the receiver drops them as
				// corrupt, so not even the handshake gets through.
				var ln net.Listener
				inNS(t, nsC, func() (err error) { ln, err = net.Listen("tcp4", "198.18.0.2:5002"); return err })
				defer ln.Close()
				inNS(t, nsA, func() error {
					c, err := net.DialTimeout("tcp4", "198.18.0.2:5002", time.Second)
					if err == nil {
						c.Close()
						t.Errorf("TCP handshake passed without vnet headers; partial checksums are fixed somewhere now")
					}
					return nil
				})
				stopFwd()
				t.Logf("without VnetHdr: forwarded %d frames, dropped %d; handshake failed as expected", fwd, dropped)
				return
			}
			d := tcpStream(t, nsA, nsC, "198.18.0.2:5003", 32<<20)
			t.Logf("32 MiB forwarded through TPACKETv3 rings with VnetHdr in %v (%.0f Mbit/s)", d, float64(32<<23)/d.Seconds()/1e6)
		})
	}
}
