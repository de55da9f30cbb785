//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// TestRXModes runs one connection at a time (HTTP keep-alive and a UDP flow) through the VIP in
// NAT and DR with each receive mode and checks every answer. In auto mode (thresholds lowered with
// GOVS_RX_AUTO_PPS) a load rises and falls around the single connection so the data plane switches
// rings under it both ways; the checker must not see a lost, wrong or reordered answer.
func TestRXModes(t *testing.T) {
	labtest.RequireRoot(t)
	for _, method := range []string{"nat", "dr"} {
		t.Run(method, func(t *testing.T) {
			s := newTwoServiceSetup(t, method, "govs-rx", "")
			topo := s.topo
			for _, mode := range []string{"latency", "throughput", "auto"} {
				t.Run(mode, func(t *testing.T) {
					env := []string(nil)
					if mode == "auto" {
						// Between the checker alone and the checker under load; DR sees one direction only.
						env = []string{"GOVS_RX_AUTO_PPS=12000:3000"}
						if method == "dr" {
							env = []string{"GOVS_RX_AUTO_PPS=5000:1200"}
						}
					}
					g := startGovsMode(t, topo, s.cfg, mode, env)
					defer g.stop()
					p50 := s.singleConn(t, 200, 0, nil)
					// Logged, not asserted: latency targets live in make bench-lab (wrk -t1 -c1
					// against the kernel in the same run), not in a timed test.
					t.Logf("%s/%s: single-connection HTTP p50 %v", method, mode, p50)
					st := g.mustStats()
					wantLat := int64(1)
					if mode == "throughput" {
						wantLat = 0
					}
					if got := st.Counters["rx_ring_latency"]; got != wantLat {
						t.Errorf("rx_ring_latency = %d, want %d", got, wantLat)
					}
					if mode != "auto" {
						return
					}
					s.riseAndFall(t, g)
				})
			}
		})
	}
}

// singleConn makes n sequential requests on one keep-alive HTTP connection and n UDP requests on
// one flow, checks each answer and returns the HTTP p50. pause, when positive, waits between
// exchanges; stop, when not nil, ends it early.
func (s *setup) singleConn(t *testing.T, n int, pause time.Duration, stop <-chan struct{}) time.Duration {
	t.Helper()
	hc := s.topo.Client.HTTPClient(true)
	defer hc.CloseIdleConnections()
	uc, err := s.topo.Client.Dial(context.Background(), "udp", netip.AddrPortFrom(s.vip, lab.UDPEchoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	var lat []time.Duration
	buf := make([]byte, 1500)
	for i := 0; i < n; i++ {
		if i > 0 && pause > 0 {
			// As the background checker, a pause between exchanges keeps its own rate (a few
			// hundred frames a second) well under the auto thresholds the test sets, so only the
			// load moves them.
			time.Sleep(pause)
		}
		select {
		case <-stop:
			i = n
			continue
		default:
		}
		start := time.Now()
		body, err := getOnce(hc, s.baseURL+"/", 2*time.Second)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		lat = append(lat, time.Since(start))
		if _, ok := s.serverIndex(body); !ok {
			t.Fatalf("request %d: body %q is no server's", i, body)
		}
		payload := fmt.Sprintf("rx-%d", i)
		if _, err := uc.Write([]byte(payload)); err != nil {
			t.Fatal(err)
		}
		_ = uc.SetReadDeadline(time.Now().Add(time.Second))
		m, err := uc.Read(buf)
		if err != nil {
			t.Fatalf("UDP request %d: no answer: %v", i, err)
		}
		if got := string(buf[:m]); !strings.Contains(got, payload) {
			t.Fatalf("UDP request %d: answer %q does not echo %q (lost or reordered)", i, got, payload)
		}
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		return 0
	}
	return lat[len(lat)/2]
}

// riseAndFall runs the single-connection checker while 20 keep-alive clients load the VIP for a
// while and then stop; auto mode must switch to the throughput ring and back.
func (s *setup) riseAndFall(t *testing.T, g *govsProc) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.singleConn(t, 1<<30, 5*time.Millisecond, stop)
	}()
	var load atomic.Bool
	load.Store(true)
	var lwg sync.WaitGroup
	var failures atomic.Int64
	for range 20 {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			hc := s.topo.Client.HTTPClient(true)
			defer hc.CloseIdleConnections()
			for load.Load() {
				body, err := getOnce(hc, s.baseURL+"/", 2*time.Second)
				if _, ok := s.serverIndex(body); err != nil || !ok {
					failures.Add(1)
				}
			}
		}()
	}
	waitCounter := func(name string, want int64, d time.Duration) int64 {
		deadline := time.Now().Add(d)
		for {
			st := g.mustStats()
			if st.Counters[name] == want || time.Now().After(deadline) {
				return st.Counters[name]
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := waitCounter("rx_ring_latency", 0, 5*time.Second); got != 0 {
		t.Errorf("under load: rx_ring_latency = %d, want 0 (switched to the throughput ring)", got)
	}
	time.Sleep(500 * time.Millisecond)
	load.Store(false)
	lwg.Wait()
	if got := waitCounter("rx_ring_latency", 1, 5*time.Second); got != 1 {
		t.Errorf("after the load: rx_ring_latency = %d, want 1 (back on the latency ring)", got)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	st := g.mustStats()
	if sw := st.Counters["rx_mode_switches"]; sw < 2 {
		t.Errorf("rx_mode_switches = %d, want at least 2", sw)
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d load requests failed across the switches", n)
	}
	if !strings.Contains(g.out.String(), "rx_mode auto: switched to the throughput ring") ||
		!strings.Contains(g.out.String(), "rx_mode auto: switched to the latency ring") {
		t.Errorf("the switches are not in govs's log:\n%s", g.out.String())
	}
	t.Logf("counters after rise and fall: %v", st.Counters)
}

// newTwoServiceSetup builds a topology for method with two real servers, starts their
// applications, and configures two workers and two services on the VIP, HTTP and the UDP echo,
// with dataplane as more [dataplane] lines; singleConn checks both.
func newTwoServiceSetup(t *testing.T, method, prefix, dataplane string) *setup {
	t.Helper()
	return newTwoServiceSetupQueues(t, method, prefix, dataplane, 0)
}

// newTwoServiceSetupQueues is newTwoServiceSetup with the balancer's links given queues receive
// and transmit queues (lab.Options.Queues).
func newTwoServiceSetupQueues(t *testing.T, method, prefix, dataplane string, queues int) *setup {
	t.Helper()
	topo := labtest.NewForTest(t, lab.Options{Method: method, Servers: 2, Prefix: prefix, Queues: queues})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	rs := func(port uint16) []netip.AddrPort {
		return []netip.AddrPort{netip.AddrPortFrom(s.reals[0], port), netip.AddrPortFrom(s.reals[1], port)}
	}
	s.cfg = govsConfig{
		Interfaces: topo.BalancerIfaces,
		Workers:    2,
		Dataplane:  dataplane,
		VS: []vsConfig{
			{netip.AddrPortFrom(s.vip, lab.HTTPPort), "tcp", "rr", method, rs(lab.HTTPPort), []int{1, 1}, "", nil},
			{netip.AddrPortFrom(s.vip, lab.UDPEchoPort), "udp", "rr", method, rs(lab.UDPEchoPort), []int{1, 1}, "", nil},
		},
	}
	s.baseURL = "http://" + netip.AddrPortFrom(s.vip, lab.HTTPPort).String()
	return s
}

// startGovsMode is startGovs with [dataplane] rx_mode set and extra environment.
func startGovsMode(t *testing.T, topo *lab.Topology, cfg govsConfig, mode string, env []string) *govsProc {
	t.Helper()
	cfg.Dataplane += fmt.Sprintf("rx_mode = %q\n", mode)
	return startGovsEnv(t, topo, cfg, env)
}
