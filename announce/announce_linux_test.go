//go:build linux

package announce

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

var (
	vip4     = netip.MustParseAddr("198.18.20.100")
	labPeer4 = netip.MustParseAddr("198.18.20.2")
)

// alab: namespace "lb" with lb0 and no address at all, veth to "peer" with peer0
// 198.18.20.2/24 and 2001:2:20::2/64. The VIPs are in the peer's subnets.
type alab struct{ lb, peer string }

func newALab(t *testing.T) *alab {
	t.Helper()
	requireRoot(t)
	l := &alab{lb: newNetns(t, "alb"), peer: newNetns(t, "apeer")}
	ipCmd(t, "-n", l.lb, "link", "add", "lb0", "type", "veth", "peer", "name", "peer0", "netns", l.peer)
	ipCmd(t, "-n", l.lb, "link", "set", "lb0", "address", net.HardwareAddr(ourMAC[:]).String())
	ipCmd(t, "-n", l.lb, "link", "set", "lb0", "up")
	ipCmd(t, "-n", l.peer, "link", "set", "peer0", "up")
	ipCmd(t, "-n", l.peer, "addr", "add", "198.18.20.2/24", "dev", "peer0")
	ipCmd(t, "-n", l.peer, "addr", "add", "2001:2:20::2/64", "dev", "peer0", "nodad")
	// A device set up sends through the noop qdisc, dropping everything, until linkwatch
	// activates it (and marks it UP), which on a busy machine takes up to a second: the first
	// announcements would be lost.
	for _, end := range [][2]string{{l.lb, "lb0"}, {l.peer, "peer0"}} {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			out, err := exec.Command("ip", "-n", end[0], "-o", "link", "show", "dev", end[1]).CombinedOutput()
			if err == nil && strings.Contains(string(out), "state UP") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s in %s not UP after 5s: %s", end[1], end[0], out)
			}
		}
	}
	return l
}

func (l *alab) newAnnouncer(t *testing.T) *Announcer {
	t.Helper()
	var (
		a   *Announcer
		err error
	)
	inNetns(t, l.lb, func() { a, err = New("lb0", t.Logf) })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// poke makes the peer's kernel resolve vip by sending it a UDP datagram.
func (l *alab) poke(t *testing.T, vip netip.Addr) {
	t.Helper()
	inNetns(t, l.peer, func() {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, 9)))
		if err != nil {
			t.Errorf("dial %s from peer: %v", vip, err)
			return
		}
		defer c.Close()
		c.Write([]byte("govs announce test"))
	})
}

// peerNeigh returns the peer's neighbour entry for vip, as `ip neigh` prints it.
func (l *alab) peerNeigh(t *testing.T, vip netip.Addr) string {
	return strings.TrimSpace(ipCmd(t, "-n", l.peer, "neigh", "show", vip.String(), "dev", "peer0"))
}

func TestAnswersARPAndNS(t *testing.T) {
	l := newALab(t)
	a := l.newAnnouncer(t)
	a.SetVIPs([]netip.Addr{vip4, vip6})
	want := "lladdr " + net.HardwareAddr(ourMAC[:]).String()
	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run(vip.String(), func(t *testing.T) {
			l.poke(t, vip)
			deadline := time.Now().Add(2 * time.Second)
			for {
				got := l.peerNeigh(t, vip)
				if strings.Contains(got, want) {
					t.Logf("peer: %s", got)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("peer neighbour entry for %s = %q, want %q", vip, got, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	arpReplies, ndpAdverts, _ := a.Stats()
	if arpReplies == 0 || ndpAdverts == 0 {
		t.Errorf("Stats: %d ARP replies, %d NAs; want both > 0", arpReplies, ndpAdverts)
	}

	t.Run("solicited-node group joined", func(t *testing.T) {
		out, err := run("ip", "netns", "exec", l.lb, "cat", "/proc/net/dev_mcast")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "3333ff000100") {
			t.Errorf("lb0 has not joined 33:33:ff:00:01:00:\n%s", out)
		}
		a.SetVIPs([]netip.Addr{vip4})
		out, _ = run("ip", "netns", "exec", l.lb, "cat", "/proc/net/dev_mcast")
		if strings.Contains(out, "3333ff000100") {
			t.Errorf("lb0 still in 33:33:ff:00:01:00 after the VIP was released:\n%s", out)
		}
	})

	t.Run("Close stops answering", func(t *testing.T) {
		if err := a.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		ipCmd(t, "-n", l.peer, "neigh", "flush", "dev", "peer0")
		l.poke(t, vip4)
		time.Sleep(1500 * time.Millisecond)
		if got := l.peerNeigh(t, vip4); strings.Contains(got, "lladdr") {
			t.Errorf("after Close the peer still resolved %s: %q", vip4, got)
		}
	})
}

// announcement is a gratuitous ARP or unsolicited NA seen by the peer.
type announcement struct {
	vip   netip.Addr
	at    time.Duration
	reply bool // an ARP reply form (sent right after each request form)
}

// capture records announcements for vip4/vip6 from ourMAC arriving at the peer until stop.
func (l *alab) capture(t *testing.T, d time.Duration, start func()) []announcement {
	t.Helper()
	var conns []*packet.Conn
	inNetns(t, l.peer, func() {
		ifi, err := net.InterfaceByName("peer0")
		if err != nil {
			t.Error(err)
			return
		}
		for _, proto := range []int{unix.ETH_P_ARP, unix.ETH_P_IPV6} {
			c, err := packet.Listen(ifi, packet.Raw, proto, nil)
			if err != nil {
				t.Error(err)
				return
			}
			conns = append(conns, c)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	t0 := time.Now()
	results := make(chan []announcement, len(conns))
	for _, c := range conns {
		c.SetReadDeadline(t0.Add(d))
		go func(c *packet.Conn) {
			defer c.Close()
			var got []announcement
			buf := make([]byte, 1514)
			for {
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					results <- got
					return
				}
				if v, reply, ok := parseAnnouncement(buf[:n]); ok {
					got = append(got, announcement{vip: v, at: time.Since(t0), reply: reply})
				}
			}
		}(c)
	}
	start()
	var all []announcement
	for range conns {
		all = append(all, <-results...)
	}
	return all
}

// parseAnnouncement recognises our gratuitous ARP (request or reply, sender = target = VIP) and
// our unsolicited NA (to ff02::1, O set, S clear).
func parseAnnouncement(f []byte) (vip netip.Addr, reply, ok bool) {
	if len(f) < 14 || [6]byte(f[6:12]) != ourMAC {
		return netip.Addr{}, false, false
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case unix.ETH_P_ARP:
		if len(f) < 42 {
			return netip.Addr{}, false, false
		}
		op := binary.BigEndian.Uint16(f[20:22])
		if op != 1 && op != 2 {
			return netip.Addr{}, false, false
		}
		spa, tpa := netip.AddrFrom4([4]byte(f[28:32])), netip.AddrFrom4([4]byte(f[38:42]))
		// The target hardware address is broadcast in a request, our own in a reply: only then
		// does Linux take a reply as gratuitous (arp_is_garp).
		tha, want := [6]byte(f[32:38]), [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		if op == 2 {
			want = ourMAC
		}
		return spa, op == 2, spa == tpa && [6]byte(f[22:28]) == ourMAC && tha == want
	case etherTypeIPv6:
		if len(f) < naFrameLen || f[icmpOff] != icmpTypeNA {
			return netip.Addr{}, false, false
		}
		dst := netip.AddrFrom16([16]byte(f[ethHeaderLen+24 : ethHeaderLen+40]))
		flags := f[icmpOff+4]
		return netip.AddrFrom16([16]byte(f[icmpOff+8 : icmpOff+24])), false, dst == allNodes && flags == naFlagOverride
	}
	return netip.Addr{}, false, false
}

// counts counts the announcements per VIP, request forms and NAs apart from ARP reply forms.
func counts(got []announcement) (requests, replies map[netip.Addr]int) {
	requests, replies = map[netip.Addr]int{}, map[netip.Addr]int{}
	for _, g := range got {
		if g.reply {
			replies[g.vip]++
		} else {
			requests[g.vip]++
		}
	}
	return requests, replies
}

func TestAnnouncesNewVIPs(t *testing.T) {
	l := newALab(t)
	a := l.newAnnouncer(t)
	got := l.capture(t, announceInterval*time.Duration(announceRepeats)+500*time.Millisecond, func() {
		a.SetVIPs([]netip.Addr{vip4, vip6})
		a.SetVIPs([]netip.Addr{vip4, vip6}) // unchanged: no extra announcements
	})
	count, replies := counts(got)
	for _, g := range got {
		t.Logf("%s announced at %v (reply form %v)", g.vip, g.at.Round(time.Millisecond), g.reply)
	}
	for _, vip := range []netip.Addr{vip4, vip6} {
		if count[vip] != announceRepeats {
			t.Errorf("%s announced %d times, want %d", vip, count[vip], announceRepeats)
		}
	}
	if replies[vip4] != announceRepeats || replies[vip6] != 0 {
		t.Errorf("gratuitous ARP reply forms: %v; want one after each request for %s", replies, vip4)
	}
	for _, g := range got {
		if g.at > 3*announceInterval {
			t.Errorf("%s announced at %v, after the schedule", g.vip, g.at)
		}
	}
	if _, _, gratuitous := a.Stats(); gratuitous != uint64(2*announceRepeats) {
		t.Errorf("Stats gratuitous = %d, want %d", gratuitous, 2*announceRepeats)
	}

	t.Run("released VIP is not announced", func(t *testing.T) {
		got := l.capture(t, 1500*time.Millisecond, func() {
			a.SetVIPs([]netip.Addr{labPeer4.Next(), vip6}) // 198.18.20.3 is new; vip4 released
			time.Sleep(100 * time.Millisecond)
			a.SetVIPs([]netip.Addr{vip6}) // release 198.18.20.3 before its repeat
		})
		count, _ := counts(got)
		if count[labPeer4.Next()] != 1 || count[vip4] != 0 || count[vip6] != 0 {
			t.Errorf("announcements %v; want 198.18.20.3 once (released before its repeat) and nothing else", count)
		}
	})
}

func TestRefreshAndReannounce(t *testing.T) {
	l := newALab(t)
	a := l.newAnnouncer(t)
	a.SetVIPs([]netip.Addr{vip4, vip6})
	// The takeover burst must be over before the capture starts, or its last repeat (late on a
	// busy machine) is counted as a refresh.
	deadline := time.Now().Add(5 * time.Second)
	for _, _, gratuitous := a.Stats(); gratuitous < uint64(2*announceRepeats); _, _, gratuitous = a.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the takeover burst sent %d announcements in 5s, want %d", gratuitous, 2*announceRepeats)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)

	const every = 300 * time.Millisecond
	got := l.capture(t, 1000*time.Millisecond, func() { a.SetRefresh(every) })
	count, replies := counts(got)
	for _, vip := range []netip.Addr{vip4, vip6} {
		// At 300, 600 and 900 ms.
		if count[vip] != 3 {
			t.Errorf("%s refreshed %d times in 1s, want 3 (every %v)", vip, count[vip], every)
		}
	}
	if replies[vip4] != count[vip4] {
		t.Errorf("refresh sent %d ARP reply forms for %d requests", replies[vip4], count[vip4])
	}

	a.SetRefresh(0)
	got = l.capture(t, 500*time.Millisecond, func() { a.Reannounce() })
	count, _ = counts(got)
	for _, vip := range []netip.Addr{vip4, vip6} {
		if count[vip] != 1 {
			t.Errorf("after Reannounce %s announced %d times in 500ms, want 1 (at once; refresh is off)", vip, count[vip])
		}
	}
	for _, g := range got {
		if g.at > 100*time.Millisecond {
			t.Errorf("Reannounce: %s announced only after %v", g.vip, g.at)
		}
	}

	a.SetVIPs(nil)
	a.SetRefresh(every)
	if got := l.capture(t, 700*time.Millisecond, func() {}); len(got) != 0 {
		t.Errorf("holding nothing, the refresh announced %v", got)
	}
}

// TestConflictWarnsIfItGoesOn: another host announcing a held VIP once (an HA peer taking over)
// is news, logged once; announcing it on for a second or more (another host has the address) is
// a warning, once; after a minute of quiet it is news again.
func TestConflictWarnsIfItGoesOn(t *testing.T) {
	var logs []string
	a := newAnnouncer(&net.Interface{Name: "lb0", HardwareAddr: net.HardwareAddr(ourMAC[:])}, func(f string, args ...any) {
		logs = append(logs, fmt.Sprintf(f, args...))
	})
	other := net.HardwareAddr{2, 0, 0, 0, 0, 9}
	conflicts := map[netip.Addr]*conflict{}
	t0 := time.Unix(1700000000, 0)
	for _, d := range []time.Duration{0, 500 * time.Millisecond, 900 * time.Millisecond} {
		a.conflicted(conflicts, vip4, other, t0.Add(d))
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "announce: 02:00:00:00:00:09 announced VIP 198.18.20.100 on lb0, which this node holds: expected while an HA peer takes over") {
		t.Fatalf("within a second of the first: %q, want one line of news", logs)
	}
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
		a.conflicted(conflicts, vip4, other, t0.Add(d))
	}
	if len(logs) != 2 || !strings.HasPrefix(logs[1], "warning: announce: 02:00:00:00:00:09 goes on announcing VIP 198.18.20.100 on lb0, which this node holds (since 1s ago): another host has this address configured") {
		t.Fatalf("going on: %q, want one warning more", logs)
	}
	a.conflicted(conflicts, vip4, other, t0.Add(3*time.Second+2*time.Minute))
	if len(logs) != 3 || !strings.Contains(logs[2], "expected while an HA peer takes over") {
		t.Fatalf("after a quiet spell: %q, want news again", logs)
	}
}
