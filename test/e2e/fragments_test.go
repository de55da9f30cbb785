//go:build linux

package e2e

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// Fragmented traffic: fragFlows flows, fragConcurrent at a time, each one datagram of fragSizes
// bytes in turn, which the client's kernel fragments at the lab's 1500-byte MTU.
const (
	fragFlows      = 300
	fragConcurrent = 100
)

var fragSizes = []int{3000, 9000}

// TestFragments sends UDP datagrams of 3000 and 9000 bytes through the VIP of a govs with two
// workers, for hundreds of flows at once, IPv4 and IPv6, NAT and DR: each arrives whole at one
// real server (its echo holds every byte, and the name of the one server that got it) and the
// answer, as large and under NAT fragmented back through govs, comes back. The workers receive on
// the latency ring (rx_mode auto starts there), and, once, on the throughput ring, whose fanout
// members are numbered after the latency ring's.
func TestFragments(t *testing.T) {
	labtest.RequireRoot(t)
	for _, method := range []string{"nat", "dr", "fullnat"} {
		for _, fam := range []string{"ipv4", "ipv6"} {
			t.Run(fam+"/"+method, func(t *testing.T) { testFragments(t, fam, method, "", 0) })
		}
	}
	t.Run("ipv4/nat/throughput", func(t *testing.T) { testFragments(t, "ipv4", "nat", "rx_mode = \"throughput\"\n", 0) })
	// With io = "afxdp" the XDP program steers every fragment by its client address, as the
	// fanout does, on links with a queue per worker.
	for _, c := range [][2]string{{"ipv4", "nat"}, {"ipv6", "nat"}, {"ipv4", "fullnat"}} {
		t.Run(c[0]+"/"+c[1]+"/afxdp", func(t *testing.T) { testFragments(t, c[0], c[1], "io = \"afxdp\"\n", 2) })
	}
}

// testFragments runs the fragment traffic with [dataplane] extra lines dataplane, on balancer links
// with queues queues.
func testFragments(t *testing.T, fam, method, dataplane string, queues int) {
	topo := labtest.NewForTest(t, lab.Options{Method: method, IPv6: fam == "ipv6", Servers: 3, Prefix: "govs-frag", Queues: queues})
	vip, reals := topo.VIP4, topo.ServerAddrs4
	if fam == "ipv6" {
		vip, reals = topo.VIP6, topo.ServerAddrs6
	}
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	rs := make([]netip.AddrPort, len(reals))
	for i, a := range reals {
		rs[i] = netip.AddrPortFrom(a, lab.UDPEchoPort)
	}
	extra := ""
	if method == "fullnat" {
		extra = (&setup{topo: topo, vip: vip}).fullnatLocals()
	}
	cfg := govsConfig{
		Interfaces: topo.BalancerIfaces,
		Workers:    2,
		VS:         []vsConfig{{netip.AddrPortFrom(vip, lab.UDPEchoPort), "udp", "rr", method, rs, []int{1, 1, 1}, extra, nil}},
	}
	cfg.Dataplane = dataplane
	g := startGovs(t, topo, cfg)
	addr := netip.AddrPortFrom(vip, lab.UDPEchoPort).String()
	kernelBefore, err := topo.Balancer.SNMP()
	if err != nil {
		t.Fatal(err)
	}
	backlogBefore := softnetDrops(t)

	var retries, failed atomic.Int64
	perServer := map[string]int{}
	var mu sync.Mutex
	sem := make(chan struct{}, fragConcurrent)
	var wg sync.WaitGroup
	for f := range fragFlows {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			size := fragSizes[f%len(fragSizes)]
			payload := make([]byte, size)
			lab.FillPattern(payload, int64(f)*7919)
			c, err := topo.Client.Dial(context.Background(), "udp", addr)
			if err != nil {
				t.Errorf("flow %d: %v", f, err)
				failed.Add(1)
				return
			}
			defer c.Close()
			buf := make([]byte, 64<<10)
			for try := range 3 {
				if try > 0 {
					retries.Add(1)
				}
				if _, err := c.Write(payload); err != nil {
					t.Errorf("flow %d: %v", f, err)
					failed.Add(1)
					return
				}
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, err := c.Read(buf)
				if err != nil {
					continue // lost (or an ICMP error): send again
				}
				name, echo, ok := bytes.Cut(buf[:n], []byte(":"))
				if !ok || !bytes.Equal(echo, payload) {
					t.Errorf("flow %d: %d-byte datagram echoed as %d bytes %q...", f, size, n, buf[:min(n, 40)])
					failed.Add(1)
					return
				}
				mu.Lock()
				perServer[string(name)]++
				mu.Unlock()
				return
			}
			t.Errorf("flow %d: no answer to a %d-byte datagram after 3 tries", f, size)
			failed.Add(1)
		}()
	}
	wg.Wait()
	// Datagrams lost outside govs: a socket buffer that overflowed, a reassembly that failed, a
	// fragment a CPU's receive backlog had no room for (host-wide: a burst of fragments from the
	// client's and the servers' veths on a busy machine).
	outside := softnetDrops(t) - backlogBefore
	for _, ns := range append([]*lab.NS{topo.Client}, topo.Servers...) {
		m, err := ns.SNMP()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"Udp.RcvbufErrors", "Udp6.RcvbufErrors", "Ip.ReasmFails", "Ip6.ReasmFails"} {
			outside += m[k]
		}
	}
	st := g.mustStats()
	t.Logf("answers per server %v, %d retries; counters %v; drops %v; ring drops %d", perServer, retries.Load(), st.Counters, nonZeroDrops(st), st.Rings.Drops)
	if failed.Load() > 0 {
		t.Fatalf("%d of %d flows failed", failed.Load(), fragFlows)
	}
	if len(perServer) != len(reals) {
		t.Errorf("answers came from %d real servers, want all %d", len(perServer), len(reals))
	}
	// With one client address every datagram's fragments reach one worker; the flows, hashed by
	// port too, are spread over both, so about half the datagrams are handed over. Under NAT and
	// FullNAT the answers' fragments come through govs too.
	firsts := int64(fragFlows)
	if method == "nat" || method == "fullnat" {
		firsts *= 2
	}
	if st.Counters["fragments_first"] < firsts || st.Counters["fragments_later"] < firsts || st.Counters["fragments_handed_off"] == 0 {
		t.Errorf("fragment counters: first %d, later %d, handed off %d; want at least %d first and later fragments, some handed off",
			st.Counters["fragments_first"], st.Counters["fragments_later"], st.Counters["fragments_handed_off"], firsts)
	}
	// Losses the fragment logic does not cause: frames the host's CPU backlogs or govs's receive
	// rings dropped (busy CPUs: CI runs other packages' tests at the same time). A lost first
	// fragment leaves its later ones to be dropped as "fragment" after their wait, at most a
	// 9000-byte datagram's worth (6) each. One datagram in a hundred may go missing beyond those
	// (CI lost one now and then, cause not found; the drop counts and ring_drops are logged above):
	// a fault in the fragment logic loses many more, or fails flows outright.
	lost := outside + st.Rings.Drops
	allowed := lost + fragFlows/100
	for _, d := range []string{"fragment", "fragment_table_full", "fragment_handoff_full"} {
		switch n := st.Drops[d]; {
		case n == 0:
		case d == "fragment" && n <= 6*allowed:
			t.Logf("drop %s counted %d times (%d frames lost before govs's fragment logic)", d, n, lost)
		default:
			t.Errorf("drop %s counted %d times (%d frames lost before govs's fragment logic)", d, n, lost)
		}
	}
	if r := retries.Load(); r > allowed {
		t.Errorf("%d datagrams sent again, %d lost outside govs (socket buffers, reassembly, CPU backlogs) or in its receive rings", r, lost)
	} else if r > lost {
		t.Logf("%d datagrams sent again, %d of them lost where no counter says", r, r-lost)
	}
	// The kernel guard keeps every fragment govs forwards out of the balancer's IP stack, the NAT
	// answers' later fragments (no ports) included: with forwarding off it could only fail to route
	// them.
	kernelAfter, err := topo.Balancer.SNMP()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Ip.InAddrErrors", "Ip6.InAddrErrors", "Ip6.InNoRoutes", "Ip.ReasmReqds", "Ip6.ReasmReqds"} {
		if d := kernelAfter[k] - kernelBefore[k]; d > 50 {
			t.Errorf("balancer kernel %s grew by %d: it processed fragments govs forwards", k, d)
		}
	}
}

// softnetDrops returns the frames the host's CPUs dropped because their receive backlog was full
// (the second column of /proc/net/softnet_stat, summed): host-wide, not per namespace.
func softnetDrops(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 16, 64)
		if err != nil {
			t.Fatalf("/proc/net/softnet_stat: %q: %v", line, err)
		}
		sum += n
	}
	return sum
}
