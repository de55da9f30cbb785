package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/internal/netnstest"
)

// udpExchange sends one datagram from `from` to addr:port answered by an echo listener in `to`
// bound to addr, and checks the reply.
func udpExchange(t *testing.T, from, to *NS, addr netip.Addr) {
	t.Helper()
	ap := netip.AddrPortFrom(addr, 9999)
	srv, err := to.ListenPacket("udp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, src, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteTo(append([]byte("echo:"), buf[:n]...), src)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := from.Dial(ctx, "udp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1500)
	// Retry a few times: the first datagram may wait for neighbour resolution.
	for try := 0; try < 5; try++ {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatalf("%s -> %s: %v", from.Name, ap, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		if got := string(buf[:n]); got != "echo:ping" {
			t.Fatalf("%s -> %s: got %q, want %q", from.Name, ap, got, "echo:ping")
		}
		return
	}
	t.Fatalf("%s -> %s: no reply after 5 tries", from.Name, ap)
}

func namespacesWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	ents, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestTopology(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, tt := range []struct {
		method string
		ipv6   bool
	}{
		{"nat", false},
		{"nat", true},
		{"dr", false},
		{"dr", true},
		{"tun", false},
		{"tun", true},
	} {
		t.Run(fmt.Sprintf("%s/ipv6=%v", tt.method, tt.ipv6), func(t *testing.T) {
			prefix := fmt.Sprintf("govs-labtest-%s%v", tt.method, tt.ipv6)
			topo, err := New(Options{Method: tt.method, IPv6: tt.ipv6, Servers: 2, Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					_ = topo.Close()
				}
			}()
			if got := len(namespacesWithPrefix(t, prefix)); got != 3+len(topo.Servers) {
				t.Fatalf("%d namespaces named %s*, want %d", got, prefix, 3+len(topo.Servers))
			}
			// The balancer's kernel must be silent once New returns: the e2e tests compare its
			// ICMP/RST counters before and after traffic.
			quiet0, err := topo.Balancer.SNMP()
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
			quiet1, err := topo.Balancer.SNMP()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"Tcp.OutRsts", "Icmp.OutMsgs", "Icmp6.OutMsgs", "Ip6.OutRequests"} {
				if quiet0[k] != quiet1[k] {
					t.Errorf("idle balancer %s moved %d -> %d after New returned", k, quiet0[k], quiet1[k])
				}
			}
			for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
				if v, err := topo.Balancer.Sysctl(k); err != nil || v != "0" {
					t.Errorf("balancer %s = %q (%v), want 0", k, v, err)
				}
			}
			for _, ifname := range topo.BalancerIfaces {
				if mac, err := topo.Balancer.HardwareAddr(ifname); err != nil || len(mac) != 6 {
					t.Errorf("balancer %s: mac %v, err %v", ifname, mac, err)
				}
			}

			t.Run("client-l0", func(t *testing.T) {
				udpExchange(t, topo.Client, topo.Balancer, topo.BalancerL0Addr4)
				if tt.ipv6 {
					udpExchange(t, topo.Client, topo.Balancer, topo.BalancerL0Addr6)
				}
			})
			t.Run("servers", func(t *testing.T) {
				for i, rs := range topo.Servers {
					peer, a4 := topo.Balancer, topo.BalancerL1Addr4
					if tt.method != "nat" {
						peer, a4 = topo.Client, topo.ClientAddr4
					}
					udpExchange(t, rs, peer, a4)
					udpExchange(t, peer, rs, topo.ServerAddrs4[i])
					if tt.ipv6 {
						a6 := topo.BalancerL1Addr6
						if tt.method != "nat" {
							a6 = topo.ClientAddr6
						}
						udpExchange(t, rs, peer, a6)
						udpExchange(t, peer, rs, topo.ServerAddrs6[i])
					}
				}
			})
			t.Run("apps", func(t *testing.T) { testApps(t, topo) })
			if tt.method != "nat" {
				t.Run("vip-not-claimed", func(t *testing.T) { testVIPNotClaimed(t, topo) })
			}

			snmp, err := topo.Balancer.SNMP()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"Tcp.OutRsts", "Icmp.OutMsgs", "Udp.InDatagrams"} {
				if _, ok := snmp[k]; !ok {
					t.Errorf("SNMP() lacks %s", k)
				}
			}
			if _, ok := snmp["Icmp6.OutMsgs"]; tt.ipv6 && !ok {
				t.Errorf("SNMP() lacks Icmp6.OutMsgs")
			}
			if snmp["Udp.InDatagrams"] == 0 {
				t.Errorf("balancer Udp.InDatagrams = 0 after UDP exchanges: counters not read in its namespace")
			}

			closed = true
			if err := topo.Close(); err != nil {
				t.Fatal(err)
			}
			if err := topo.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if left := namespacesWithPrefix(t, prefix); len(left) != 0 {
				t.Fatalf("namespaces left behind: %v", left)
			}
			if err := topo.Client.Do(func() error { return nil }); err == nil {
				t.Fatal("Do on a torn-down namespace succeeded")
			}
		})
	}
}

// testApps reaches the real servers' applications directly (not through a VIP): from the balancer
// for NAT (server net), from the client for DR (shared net).
func testApps(t *testing.T, topo *Topology) {
	srvs, err := StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	defer srvs.Close()
	from := topo.Balancer
	if topo.Options.Method == "dr" {
		from = topo.Client
	}
	hc := from.HTTPClient(false)
	addrs := [][]netip.Addr{topo.ServerAddrs4}
	if topo.Options.IPv6 {
		addrs = append(addrs, topo.ServerAddrs6)
	}
	for _, fam := range addrs {
		for i, a := range fam {
			base := "http://" + netip.AddrPortFrom(a, HTTPPort).String()
			resp, err := hc.Get(base + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("rs%d\n", i+1); string(body) != want {
				t.Errorf("GET %s/ = %q, want %q", base, body, want)
			}
			const n = 300000
			resp, err = hc.Get(fmt.Sprintf("%s/bytes?n=%d", base, n))
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyPattern(resp.Body, n); err != nil {
				t.Errorf("GET %s/bytes: %v", base, err)
			}
			resp.Body.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := from.Dial(ctx, "udp", netip.AddrPortFrom(a, UDPEchoPort).String())
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write([]byte("hi"))
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 100)
			k, err := c.Read(buf)
			c.Close()
			if want := fmt.Sprintf("rs%d:hi", i+1); err != nil || string(buf[:k]) != want {
				t.Errorf("UDP echo %s: got %q, %v; want %q", a, buf[:k], err, want)
			}
		}
	}
	if srvs.Accepted(0) == 0 {
		t.Errorf("Accepted(0) = 0 after HTTP requests to rs1")
	}
}

// testVIPNotClaimed checks that with no balancer answering for it, the VIP is unreachable from the
// client although every DR server has it on lo with an echo bound to it: the servers must not
// answer ARP/NS for the VIP.
func testVIPNotClaimed(t *testing.T, topo *Topology) {
	srvs, err := StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	defer srvs.Close()
	vips := []netip.Addr{topo.VIP4}
	if topo.Options.IPv6 {
		vips = append(vips, topo.VIP6)
	}
	for _, vip := range vips {
		c, err := topo.Client.Dial(context.Background(), "udp", netip.AddrPortFrom(vip, UDPEchoPort).String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("x"))
		_ = c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		buf := make([]byte, 100)
		k, err := c.Read(buf)
		c.Close()
		if err == nil {
			t.Errorf("VIP %s answered %q with no balancer: a real server claims the VIP", vip, buf[:k])
		} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Logf("VIP %s: %v (fine: unreachable)", vip, err)
		}
	}
}

func TestParseSNMP(t *testing.T) {
	snmp := []byte("Ip: Forwarding DefaultTTL\nIp: 2 64\nTcp: RtoAlgorithm OutRsts\nTcp: 1 7\nIcmp: InMsgs OutMsgs\nIcmp: 3 -1\n")
	snmp6 := []byte("Ip6InReceives                   \t5\nIcmp6OutMsgs 9\nIcmp6OutDestUnreachs 2\nUdpLite6InErrors 1\nUdp6InDatagrams 4\n\n")
	m := map[string]int64{}
	if err := parseSNMPPairs(snmp, m); err != nil {
		t.Fatal(err)
	}
	if err := parseSNMP6(snmp6, m); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"Ip.Forwarding": 2, "Ip.DefaultTTL": 64, "Tcp.RtoAlgorithm": 1, "Tcp.OutRsts": 7,
		"Icmp.InMsgs": 3, "Icmp.OutMsgs": -1, "Ip6.InReceives": 5, "Icmp6.OutMsgs": 9,
		"Icmp6.OutDestUnreachs": 2, "UdpLite6.InErrors": 1, "Udp6.InDatagrams": 4,
	}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Fatalf("(-want +got):\n-%v\n+%v", want, m)
	}
	for _, bad := range []string{"Ip: A B\nIp: 1\n", "Ip: A\nTcp: 1\n", "Ip: A\n", "Ip: A\nIp: x\n"} {
		if err := parseSNMPPairs([]byte(bad), map[string]int64{}); err == nil {
			t.Errorf("parseSNMPPairs(%q) succeeded", bad)
		}
	}
	if err := parseSNMP6([]byte("Ip6InReceives 1 2\n"), map[string]int64{}); err == nil {
		t.Error("parseSNMP6 accepted three fields")
	}
}

func TestPattern(t *testing.T) {
	const n = 200000
	buf := make([]byte, n)
	FillPattern(buf[:1000], 0)
	FillPattern(buf[1000:], 1000)
	if err := VerifyPattern(bytes.NewReader(buf), n); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		b    []byte
		n    int64
	}{
		{"short", buf[:n-1], n},
		{"long", buf, n - 1},
		{"corrupt", func() []byte { c := bytes.Clone(buf); c[70000] ^= 1; return c }(), n},
		{"chunk moved", append(bytes.Clone(buf[65536:131072]), buf[65536:]...), n},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := VerifyPattern(bytes.NewReader(tt.b), tt.n); err == nil {
				t.Error("VerifyPattern accepted a bad stream")
			}
		})
	}
}
