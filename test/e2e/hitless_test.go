//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// TestHitlessReload: 20 long-lived TCP streams and a steady rate of new connections run for more
// than 12 seconds while the file is reloaded every second, alternately by SIGHUP and by `govs ctl
// reload`: each valid file changes the weights, adds a real server and removes one (servers come
// back while their earlier connections still drain), and every third file is broken, so the
// reload is rejected and the running configuration stays. No stream is reset or stalls, every
// byte arrives intact, and no new connection fails.
func TestHitlessReload(t *testing.T) {
	labtest.RequireRoot(t)
	for _, method := range []string{"nat", "dr"} {
		t.Run(method, func(t *testing.T) { testHitlessReload(t, method) })
	}
}

func testHitlessReload(t *testing.T, method string) {
	const (
		servers  = 4 // the pool; three of them are in the service at a time
		active   = 3
		streams  = 20
		reloads  = 12
		newEvery = 50 * time.Millisecond // 20 new connections a second
	)
	topo := labtest.NewForTest(t, lab.Options{Method: method, Servers: servers, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	vip := netip.AddrPortFrom(s.vip, lab.HTTPPort)
	gen := func(m int) govsConfig {
		vs := vsConfig{Address: vip, Protocol: "tcp", Scheduler: "wrr", Method: method}
		for i := range active {
			vs.Reals = append(vs.Reals, netip.AddrPortFrom(s.reals[(m+i)%servers], lab.HTTPPort))
			vs.Weights = append(vs.Weights, 1+(m+i)%3)
		}
		return govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, VS: []vsConfig{vs}}
	}
	g := startGovs(t, topo, gen(0))
	g.waitResolved(10 * time.Second)

	var open []*longStream
	for i := range streams {
		st, err := openStream(topo, vip)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		open = append(open, st)
	}
	t.Cleanup(func() {
		for _, st := range open {
			st.stop()
		}
	})
	perServer := map[string]int{}
	for _, st := range open {
		perServer[st.server]++
	}
	t.Logf("%d streams: %v", streams, perServer)

	// New connections at a steady rate, each from its own goroutine so a slow one does not slow
	// the rate.
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var errs []string
	stopNew := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(newEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopNew:
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.requestFrom(0, vip, 5*time.Second); err != nil {
					failed.Add(1)
					errMu.Lock()
					if len(errs) < 10 {
						errs = append(errs, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
					}
					errMu.Unlock()
					return
				}
				ok.Add(1)
			}()
		}
	}()

	m := 0 // the generation of the configuration in force
	for k := 1; k <= reloads; k++ {
		time.Sleep(time.Second)
		broken := k%3 == 0
		bySignal := k%2 == 1
		next := gen(m + 1)
		next.Socket = g.cfg.Socket
		text := next.toml()
		if broken {
			text = strings.Replace(text, "weight = ", "weight = -", 1)
		}
		how := "govs ctl reload"
		if bySignal {
			how = "SIGHUP"
		}
		switch {
		case bySignal && !broken:
			g.reload(next) // waits until the new weights are in force
		case bySignal:
			rejects := strings.Count(g.out.String(), "reload rejected")
			if err := os.WriteFile(g.cfgPath, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); strings.Count(g.out.String(), "reload rejected") == rejects; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("reload %d: govs did not reject the broken file within 10s", k)
				}
			}
		default:
			if err := os.WriteFile(g.cfgPath, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, stderr, code := runGovs(20*time.Second, "ctl", "-control", g.cfg.Socket, "reload")
			if broken && (code != 1 || !strings.Contains(stderr, g.cfgPath+":") || !strings.Contains(stderr, "weight")) {
				t.Errorf("reload %d: govs ctl reload of a broken file: exit %d\nstdout: %s\nstderr: %s", k, code, out, stderr)
			}
			if !broken && (code != 0 || !strings.HasPrefix(out, "reloaded ")) {
				t.Fatalf("reload %d: govs ctl reload: exit %d\nstdout: %s\nstderr: %s", k, code, out, stderr)
			}
			if !broken {
				g.cfg = next
			}
		}
		if !broken {
			m++
		}
		t.Logf("reload %d by %s: %s", k, how, map[bool]string{true: "broken file, rejected", false: fmt.Sprintf("generation %d", m)}[broken])
	}
	time.Sleep(time.Second)
	close(stopNew)
	wg.Wait()

	for i, st := range open {
		if err := st.check(); err != nil {
			t.Errorf("stream %d (to %s): %v", i, st.server, err)
		}
	}
	var total int64
	for _, st := range open {
		total += st.got.Load()
		st.stop()
	}
	stats := g.mustStats()
	t.Logf("streams carried %d KiB; %d new connections completed, %d failed; drops %v", total>>10, ok.Load(), failed.Load(), nonZeroDrops(stats))
	if f := failed.Load(); f > 0 {
		t.Errorf("%d new connections failed during the reloads, e.g.:\n%s", f, strings.Join(errs, "\n"))
	}
	if ok.Load() < 150 {
		t.Errorf("only %d new connections completed in %d s: the load did not run", ok.Load(), reloads)
	}
	g.alive()
	g.stop()
}

// longStream is one long-lived TCP connection through the VIP: a download of a gigabyte that
// the client reads slowly (so it lasts for the whole test), checking every byte.
type longStream struct {
	c      net.Conn
	server string // the real server that answered (X-Server)
	got    atomic.Int64
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once
	err    error // valid once done is closed
}

// Stream pacing: 4 KiB every 25 ms (160 KiB/s); a read that waits longer than streamStall fails
// the stream: a reset, or a stall longer than TCP's retransmissions would explain.
const (
	streamChunk = 4 << 10
	streamPace  = 25 * time.Millisecond
	streamStall = 5 * time.Second
)

func openStream(topo *lab.Topology, target netip.AddrPort) (*longStream, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := topo.Client.Dial(ctx, "tcp", target.String())
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /bytes?n=%d HTTP/1.1\r\nHost: govs\r\n\r\n", lab.MaxBytes); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	s := &longStream{c: c, server: resp.Header.Get("X-Server"), quit: make(chan struct{}), done: make(chan struct{})}
	go s.read(resp.Body)
	return s, nil
}

// read consumes the body at the stream's pace and checks it against the pattern until stopped.
func (s *longStream) read(body io.Reader) {
	defer close(s.done)
	buf, want := make([]byte, streamChunk), make([]byte, streamChunk)
	var off int64
	for {
		select {
		case <-s.quit:
			return
		case <-time.After(streamPace):
		}
		s.c.SetReadDeadline(time.Now().Add(streamStall))
		n, err := body.Read(buf)
		lab.FillPattern(want[:n], off)
		if !bytes.Equal(buf[:n], want[:n]) {
			s.err = fmt.Errorf("corrupt data at offset %d", off)
			return
		}
		off += int64(n)
		s.got.Store(off)
		if err != nil {
			select {
			case <-s.quit:
			default:
				s.err = fmt.Errorf("after %d bytes: %w", off, err)
			}
			return
		}
	}
}

// check returns why the stream failed, if it did.
func (s *longStream) check() error {
	select {
	case <-s.done:
		if s.err != nil {
			return s.err
		}
		return fmt.Errorf("ended after %d bytes", s.got.Load())
	default:
		return nil
	}
}

// stop ends the stream and closes its connection.
func (s *longStream) stop() {
	s.once.Do(func() {
		close(s.quit)
		s.c.Close()
		<-s.done
	})
}
