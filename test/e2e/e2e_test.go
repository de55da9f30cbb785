//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// Sizes of the traffic each case sends.
const (
	shortConns      = 300
	shortConcurrent = 20
	kaClients       = 5
	kaRequests      = 50
	bulkBytes       = 32 << 20
	udpFlows        = 30
	udpRequests     = 10
	malformedFrames = 2000
)

// setup is one topology with servers and a running govs.
type setup struct {
	topo    *lab.Topology
	srvs    *lab.Servers
	govs    *govsProc
	cfg     govsConfig
	vip     netip.Addr
	reals   []netip.Addr // the real servers' addresses in the tested family
	baseURL string       // http://VIP:80
	altURL  string       // http://VIP:8080 (wrr 3:2:1)
}

func TestForwarding(t *testing.T) {
	labtest.RequireRoot(t)
	for _, method := range []string{"nat", "dr", "fullnat"} {
		for _, fam := range []string{"ipv4", "ipv6"} {
			t.Run(fam+"/"+method, func(t *testing.T) { testForwarding(t, fam, method, "", 2, 0) })
		}
	}
}

// testForwarding runs the forwarding suite on a fresh topology whose balancer links have queues
// queues (lab.Options.Queues), with govs's [dataplane] extra lines dataplane and workers workers,
// and returns govs's last statistics. The subtests more run after the suite's own, the
// kernel-silence check included (a long one lets neighbour entries go stale, and the kernel's
// answers to the neighbour solicitations that follow are its own traffic).
func testForwarding(t *testing.T, fam, method, dataplane string, workers, queues int, more ...namedTest) stats {
	topo := labtest.NewForTest(t, lab.Options{Method: method, IPv6: fam == "ipv6", Servers: 3, Prefix: "govs-e2e", Queues: queues})
	s := &setup{topo: topo, vip: topo.VIP4, reals: topo.ServerAddrs4}
	if fam == "ipv6" {
		s.vip, s.reals = topo.VIP6, topo.ServerAddrs6
	}
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s.srvs = srvs

	rs := func(port uint16) []netip.AddrPort {
		out := make([]netip.AddrPort, len(s.reals))
		for i, a := range s.reals {
			out[i] = netip.AddrPortFrom(a, port)
		}
		return out
	}
	extra := ""
	if method == "fullnat" {
		extra = s.fullnatLocals()
	}
	s.cfg = govsConfig{
		Interfaces: topo.BalancerIfaces,
		Workers:    workers,
		Dataplane:  dataplane,
		VS: []vsConfig{
			{netip.AddrPortFrom(s.vip, lab.HTTPPort), "tcp", "rr", method, rs(lab.HTTPPort), []int{1, 1, 1}, extra, nil},
			{netip.AddrPortFrom(s.vip, lab.HTTPAltPort), "tcp", "wrr", method, rs(lab.HTTPAltPort), []int{3, 2, 1}, extra, nil},
			{netip.AddrPortFrom(s.vip, lab.UDPEchoPort), "udp", "rr", method, rs(lab.UDPEchoPort), []int{1, 1, 1}, extra, nil},
		},
	}
	s.baseURL = "http://" + netip.AddrPortFrom(s.vip, lab.HTTPPort).String()
	s.altURL = "http://" + netip.AddrPortFrom(s.vip, lab.HTTPAltPort).String()

	s.govs = startGovs(t, topo, s.cfg)
	before, err := topo.Balancer.SNMP()
	if err != nil {
		t.Fatal(err)
	}

	// A canary first, so a govs that does not forward fails in seconds, not after every timeout.
	if _, err := getOnce(topo.Client.HTTPClient(false), s.baseURL+"/", 5*time.Second); err != nil {
		t.Fatalf("canary request through the VIP failed, govs does not forward: %v", err)
	}

	t.Run("short-conns-rr", func(t *testing.T) { s.testShortConns(t, s.baseURL, []float64{1, 1, 1}) })
	t.Run("short-conns-wrr", func(t *testing.T) { s.testShortConns(t, s.altURL, []float64{3, 2, 1}) })
	t.Run("keepalive", s.testKeepAlive)
	// Generic XDP sees a local sender's GSO frames whole (the lab's real servers send TSO over
	// veth), larger than an AF_XDP frame, and the kernel drops them: bulk TCP replies stall.
	// Driver mode on veth turns the sender's GSO off (see README, io = "afxdp").
	if !strings.Contains(dataplane, `xdp_mode = "generic"`) {
		t.Run("bulk", s.testBulk)
	}
	t.Run("udp", s.testUDP)
	t.Run("malformed", s.testMalformed)
	t.Run("weight0", s.testWeight0)
	if method == "fullnat" {
		t.Run("fullnat-routes", s.testFullNATRoutes)
		t.Run("fullnat-concurrent", s.testFullNATConcurrent)
		t.Run("fullnat-sources", s.testFullNATSources)
		t.Run("fullnat-reload", s.testFullNATReload)
		t.Run("fullnat-live", s.testFullNATLive)
	}
	t.Run("kernel-silence", func(t *testing.T) { s.testKernelSilence(t, before) })
	for _, x := range more {
		t.Run(x.name, func(t *testing.T) { x.run(t, s) })
	}

	st := s.govs.mustStats()
	t.Logf("govs counters: %v drops: %v", st.Counters, st.Drops)
	s.govs.stop()
	return st
}

// namedTest is a subtest testForwarding runs on its set-up.
type namedTest struct {
	name string
	run  func(*testing.T, *setup)
}

// getOnce does GET url and returns the body.
func getOnce(hc *http.Client, url string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("failed to read the body of %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// serverIndex maps a "/" body "rsN\n" to N-1.
func (s *setup) serverIndex(body string) (int, bool) {
	for i, name := range s.srvs.Names {
		if body == name+"\n" {
			return i, true
		}
	}
	return 0, false
}

// shortConns makes n requests, each on a new connection, with conc in flight, and returns the
// count per server; every failure is reported.
func (s *setup) shortConns(t *testing.T, url string, n, conc int) []int {
	counts := make([]int, len(s.srvs.Names))
	var mu sync.Mutex
	var failed atomic.Int64
	hc := s.topo.Client.HTTPClient(false)
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				body, err := getOnce(hc, url+"/", 10*time.Second)
				if err != nil {
					if failed.Add(1) <= 5 {
						t.Errorf("short connection: %v", err)
					}
					continue
				}
				i, ok := s.serverIndex(body)
				if !ok {
					t.Errorf("unexpected body %q", body)
					continue
				}
				mu.Lock()
				counts[i]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Errorf("%d of %d short connections failed", f, n)
	}
	return counts
}

// testShortConns checks that shortConns connections all complete and spread as weights say,
// each server within ±10% of its share.
func (s *setup) testShortConns(t *testing.T, url string, weights []float64) {
	counts := s.shortConns(t, url, shortConns, shortConcurrent)
	t.Logf("%s: per server %v (weights %v)", url, counts, weights)
	var sum float64
	for _, w := range weights {
		sum += w
	}
	for i, c := range counts {
		want := shortConns * weights[i] / sum
		if math.Abs(float64(c)-want) > 0.1*want {
			t.Errorf("%s got %d of %d connections, want %.0f ±10%%", s.srvs.Names[i], c, shortConns, want)
		}
	}
}

// stickyClient is a keep-alive HTTP client that counts the connections it opens.
type stickyClient struct {
	hc    *http.Client
	dials atomic.Int64
}

func (s *setup) newStickyClient() *stickyClient {
	c := &stickyClient{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.dials.Add(1)
			return s.topo.Client.Dial(ctx, network, addr)
		},
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     5 * time.Minute,
	}
	c.hc = &http.Client{Transport: tr}
	return c
}

// get does one request and returns the server index that answered.
func (c *stickyClient) get(s *setup, url string) (int, error) {
	body, err := getOnce(c.hc, url+"/", 10*time.Second)
	if err != nil {
		return 0, err
	}
	i, ok := s.serverIndex(body)
	if !ok {
		return 0, fmt.Errorf("unexpected body %q", body)
	}
	return i, nil
}

func (s *setup) testKeepAlive(t *testing.T) {
	var wg sync.WaitGroup
	for k := range kaClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := s.newStickyClient()
			defer c.hc.CloseIdleConnections()
			first := -1
			for r := range kaRequests {
				i, err := c.get(s, s.baseURL)
				if err != nil {
					t.Errorf("client %d request %d: %v", k, r, err)
					return
				}
				if first < 0 {
					first = i
				} else if i != first {
					t.Errorf("client %d request %d answered by %s, earlier ones by %s on the same connection",
						k, r, s.srvs.Names[i], s.srvs.Names[first])
					return
				}
			}
			if d := c.dials.Load(); d != 1 {
				t.Errorf("client %d opened %d connections for %d keep-alive requests, want 1", k, d, kaRequests)
			}
		}()
	}
	wg.Wait()
}

func (s *setup) testBulk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/bytes?n=%d", s.baseURL, bulkBytes), nil)
	start := time.Now()
	resp, err := s.topo.Client.HTTPClient(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /bytes: %s", resp.Status)
	}
	if err := lab.VerifyPattern(resp.Body, bulkBytes); err != nil {
		t.Fatalf("32 MiB transfer from %s: %v", resp.Header.Get("X-Server"), err)
	}
	d := time.Since(start)
	t.Logf("%d MiB from %s intact in %v (%.0f Mbit/s)", bulkBytes>>20, resp.Header.Get("X-Server"), d,
		float64(bulkBytes)*8/d.Seconds()/1e6)
}

// testUDP runs udpFlows flows (one socket, so one source port, each) of udpRequests exchanges:
// every request is answered (a lost datagram is retried twice and logged) and one server answers
// a whole flow.
func (s *setup) testUDP(t *testing.T) {
	vip := netip.AddrPortFrom(s.vip, lab.UDPEchoPort).String()
	perServer := make([]int, len(s.srvs.Names))
	var mu sync.Mutex
	var retries atomic.Int64
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	for f := range udpFlows {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := s.topo.Client.Dial(context.Background(), "udp", vip)
			if err != nil {
				t.Errorf("flow %d: %v", f, err)
				return
			}
			defer c.Close()
			server := ""
			buf := make([]byte, 1500)
			for r := range udpRequests {
				payload := fmt.Sprintf("flow%d-req%d", f, r)
				got := ""
			attempts:
				for try := 0; try < 3; try++ {
					if try > 0 {
						retries.Add(1)
					}
					if _, err := c.Write([]byte(payload)); err != nil {
						t.Errorf("flow %d: %v", f, err)
						return
					}
					_ = c.SetReadDeadline(time.Now().Add(time.Second))
					for {
						n, err := c.Read(buf)
						if err != nil {
							break // timeout (or ICMP error): retry
						}
						name, p, ok := strings.Cut(string(buf[:n]), ":")
						if ok && p == payload {
							got = name
							break attempts
						}
						// A late answer to an earlier attempt: keep reading.
					}
				}
				if got == "" {
					t.Errorf("flow %d request %d: no answer after 3 attempts", f, r)
					return
				}
				if server == "" {
					server = got
				} else if got != server {
					t.Errorf("flow %d request %d answered by %s, earlier ones by %s", f, r, got, server)
					return
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for i, name := range s.srvs.Names {
				if name == server {
					perServer[i]++
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("UDP flows per server %v, %d retransmissions", perServer, retries.Load())
}

// testWeight0 opens keep-alive connections, sets the weight of the server behind the first one to 0
// and checks that new connections avoid it while the open ones keep being served by it.
func (s *setup) testWeight0(t *testing.T) {
	clients := make([]*stickyClient, 3)
	servers := make([]int, 3)
	for k := range clients {
		clients[k] = s.newStickyClient()
		defer clients[k].hc.CloseIdleConnections()
		i, err := clients[k].get(s, s.baseURL)
		if err != nil {
			t.Fatalf("keep-alive client %d: %v", k, err)
		}
		servers[k] = i
	}
	victim := servers[0]
	t.Logf("kept connections on %v; setting %s's weight to 0", servers, s.srvs.Names[victim])

	cfg := s.cfg
	cfg.VS = append([]vsConfig(nil), s.cfg.VS...)
	w := append([]int(nil), cfg.VS[0].Weights...)
	w[victim] = 0
	cfg.VS[0].Weights = w
	s.govs.reload(cfg)

	counts := s.shortConns(t, s.baseURL, 60, 10)
	t.Logf("new connections after weight 0: %v", counts)
	if counts[victim] != 0 {
		t.Errorf("%s got %d new connections with weight 0", s.srvs.Names[victim], counts[victim])
	}
	for k, c := range clients {
		for r := range 10 {
			i, err := c.get(s, s.baseURL)
			if err != nil {
				t.Errorf("kept connection %d request %d after reload: %v", k, r, err)
				break
			}
			if i != servers[k] {
				t.Errorf("kept connection %d moved from %s to %s", k, s.srvs.Names[servers[k]], s.srvs.Names[i])
				break
			}
		}
		if d := c.dials.Load(); d != 1 {
			t.Errorf("kept connection %d was re-dialled (%d dials): the established connection broke", k, d)
		}
	}
}

// testKernelSilence checks that the balancer's own kernel sent no RST and no ICMP during all the
// traffic: govs alone must handle VIP traffic.
func (s *setup) testKernelSilence(t *testing.T, before map[string]int64) {
	after, err := s.topo.Balancer.SNMP()
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"Tcp.OutRsts", "Icmp.OutMsgs", "Icmp.OutDestUnreachs", "Icmp6.OutMsgs", "Icmp6.OutDestUnreachs"}
	for _, k := range keys {
		if after[k] != before[k] {
			t.Errorf("balancer kernel %s went %d -> %d: its own stack answered traffic", k, before[k], after[k])
		}
	}
	var moved []string
	for k, v := range after {
		if d := v - before[k]; d != 0 && (strings.HasPrefix(k, "Ip") || strings.HasPrefix(k, "Icmp")) {
			moved = append(moved, fmt.Sprintf("%s+%d", k, d))
		}
	}
	sort.Strings(moved)
	t.Logf("balancer kernel IP/ICMP counters that moved: %s", strings.Join(moved, " "))
	// govs's nftables ingress rules drop frames to the VIP and NAT replies to clients before the IP
	// stack: the kernel must not have tried (and failed) to route thousands of them.
	for _, k := range []string{"Ip.InAddrErrors", "Ip6.InAddrErrors", "Ip6.InNoRoutes"} {
		if d := after[k] - before[k]; d > 50 {
			t.Errorf("balancer kernel %s grew by %d: it processed frames govs forwards", k, d)
		}
	}
	if s.cfg.VS[0].Method == "nat" {
		// ...but replies to the balancer's own connections to a real server still reach it, and
		// govs, which sees them too, counts them as the host's (to_host), not as drops.
		st0, err := s.govs.stats()
		if err != nil {
			t.Fatal(err)
		}
		hc := s.topo.Balancer.HTTPClient(false)
		url := "http://" + netip.AddrPortFrom(s.reals[0], lab.HTTPPort).String() + "/"
		if body, err := getOnce(hc, url, 5*time.Second); err != nil || body != s.srvs.Names[0]+"\n" {
			t.Errorf("the balancer's own request to %s: %q, %v", url, body, err)
		}
		var st1 stats
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if st1, err = s.govs.stats(); err != nil {
				t.Fatal(err)
			}
			if st1.Counters["to_host"] > st0.Counters["to_host"] || time.Now().After(deadline) {
				break
			}
		}
		d := st1.Counters["to_host"] - st0.Counters["to_host"]
		switch xdp := strings.Contains(s.cfg.Dataplane, `io = "afxdp"`); {
		case xdp && d != 0:
			// An XDP program takes what it redirects from the kernel: it must leave these alone.
			t.Errorf("to_host grew by %d with io = \"afxdp\": the XDP program took the host's own replies from the kernel", d)
		case !xdp && d == 0:
			t.Errorf("to_host did not grow: govs did not see the real server's answer to the balancer as the host's")
		}
		if d := st1.Drops["no_service"] - st0.Drops["no_service"]; d != 0 {
			t.Errorf("no_service grew by %d during the balancer's own request: its answers counted as drops", d)
		}
	}
}
