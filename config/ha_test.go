package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// haKey writes a valid key file (mode 0600) and returns its path.
func haKey(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ha.key")
	if err := os.WriteFile(p, []byte("c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0Cg==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// haBase is dp+vsHead+rs (lines 1-9), then [ha] on line 10.
func haBase(body string) string {
	return dp + vsHead + rs + "[ha]\n" + body
}

func TestHADefaults(t *testing.T) {
	key := haKey(t)
	c, err := Parse([]byte(haBase(fmt.Sprintf("listen = \"198.18.0.3:8405\"\npeers = [\"198.18.0.4:8405\"]\nkey_file = %q\n", key))), "t.toml", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := &HA{
		Listen: netip.MustParseAddrPort("198.18.0.3:8405"), Peers: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.4:8405")},
		Priority: 100, KeyFile: key, AdvertInterval: 50 * time.Millisecond, DeadAfter: 4, Preempt: true,
		PreemptDelay: 0, GARPRefresh: 10 * time.Second, Line: 10,
	}
	if !reflect.DeepEqual(c.HA, want) {
		t.Errorf("HA = %+v\nwant %+v", c.HA, want)
	}
	c, err = Parse([]byte(dp+vsHead+rs), "t.toml", LoadOptions{})
	if err != nil || c.HA != nil {
		t.Errorf("without [ha]: HA = %+v, %v; want nil", c.HA, err)
	}
}

func TestHAFull(t *testing.T) {
	key := haKey(t)
	src := haBase(fmt.Sprintf(`listen = "[2001:2::3]:8405"
peers = ["[2001:2::4]:8405", "[2001:2::5]:9000"]
priority = 254
key_file = %q
advert_interval = "100ms"
dead_after = 3
preempt = false
preempt_delay = "30s"
garp_refresh = "0s"
floating = ["198.19.0.254", "2001:2:0:1::fe"]
`, key))
	c, err := Parse([]byte(src), "t.toml", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := &HA{
		Listen:   netip.MustParseAddrPort("[2001:2::3]:8405"),
		Peers:    []netip.AddrPort{netip.MustParseAddrPort("[2001:2::4]:8405"), netip.MustParseAddrPort("[2001:2::5]:9000")},
		Priority: 254, KeyFile: key, AdvertInterval: 100 * time.Millisecond, DeadAfter: 3, Preempt: false,
		PreemptDelay: 30 * time.Second, GARPRefresh: 0,
		Floating: []netip.Addr{netip.MustParseAddr("198.19.0.254"), netip.MustParseAddr("2001:2:0:1::fe")}, Line: 10,
	}
	if !reflect.DeepEqual(c.HA, want) {
		t.Errorf("HA = %+v\nwant %+v", c.HA, want)
	}
}

func TestHAErrors(t *testing.T) {
	key := haKey(t)
	dir := filepath.Dir(key)
	open := filepath.Join(dir, "open.key")
	os.WriteFile(open, []byte(strings.Repeat("k", 32)), 0o644)
	os.Chmod(open, 0o644)
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("tiny\n"), 0o600)
	missing := filepath.Join(dir, "missing.key")
	ok := fmt.Sprintf("listen = \"198.18.0.3:8405\"\npeers = [\"198.18.0.4:8405\"]\nkey_file = %q\n", key) // lines 11-13
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"required keys", "priority = 10\n", []string{
			`t.toml:10: ha.listen: is required; write listen = "198.18.0.3:8405" (an address of this host and a port)`,
			`t.toml:10: ha.peers: is required; list the other nodes' listen addresses, e.g. peers = ["198.18.0.4:8405"]`,
			`t.toml:10: ha.key_file: is required; write key_file = "/etc/govs/ha.key" (the same secret on every node, mode 0600)`,
		}},
		{"bad listen and peers", fmt.Sprintf("listen = \"0.0.0.0:8405\"\npeers = [\"198.18.0.4\", 5, \"198.18.0.4:8405\", \"198.18.0.4:8405\", \"[2001:2::4]:8405\"]\nkey_file = %q\n", key), []string{
			`t.toml:11: ha.listen: 0.0.0.0 is the unspecified address; write one address of one node, since it also names the node`,
			`t.toml:12: ha.peers[1]: "198.18.0.4" has no port; write "198.18.0.4:8405"`,
			`t.toml:12: ha.peers[2]: is an integer; write an address and port in quotes, e.g. "198.18.0.4:8405"`,
			`t.toml:12: ha.peers[4]: 198.18.0.4:8405 is already listed as ha.peers[3]; list each peer once`,
		}},
		{"peer is self, other family, listen is a VIP", fmt.Sprintf("listen = \"198.18.0.100:8405\"\npeers = []\nkey_file = %q\n", key), []string{
			`t.toml:11: ha.listen: 198.18.0.100 is a virtual server address, which moves between the nodes; listen on an address of this host's own`,
			`t.toml:12: ha.peers: is empty; list at least one other node, e.g. peers = ["198.18.0.4:8405"]`,
		}},
		{"self and family", fmt.Sprintf("listen = \"198.18.0.3:8405\"\npeers = [\"198.18.0.3:8405\", \"[2001:2::4]:8405\"]\nkey_file = %q\n", key), []string{
			`t.toml:12: ha.peers[1]: 198.18.0.3:8405 is this node's own listen address; list only the other nodes`,
			`t.toml:12: ha.peers[2]: [2001:2::4]:8405 is IPv6 but listen 198.18.0.3:8405 is IPv4; heartbeats go out of one socket, so use one family`,
		}},
		{"numbers out of range", ok + "priority = 255\ndead_after = 1\nadvert_interval = \"1ms\"\n", []string{
			`t.toml:14: ha.priority: 255 is out of range; write a priority from 1 to 254 (the higher wins; default 100)`,
			`t.toml:15: ha.dead_after: 1 is out of range; write a number of advert intervals from 2 to 255 (at least 2, so one lost heartbeat moves nothing; default 4)`,
			`t.toml:16: ha.advert_interval: 1ms is out of range; write a duration from 10ms to 10s (default 50ms)`,
		}},
		{"types", ok + "priority = \"high\"\npreempt = \"yes\"\npreempt_delay = 5\ngarp_refresh = \"-1s\"\nfloating = \"198.19.0.254\"\n", []string{
			`t.toml:14: ha.priority: is a string; write an integer from 1 to 254, e.g. priority = 200`,
			`t.toml:15: ha.preempt: is a string; write preempt = true or false (unquoted)`,
			`t.toml:16: ha.preempt_delay: is an integer; write a quoted Go duration, e.g. "30s"`,
			`t.toml:17: ha.garp_refresh: "-1s" is negative; write a duration of zero or more, e.g. "10s"`,
			`t.toml:18: ha.floating: is a string; write a list of addresses, e.g. floating = ["198.19.0.254"]`,
		}},
		{"floating", ok + "garp_refresh = \"10ms\"\nfloating = [\"198.18.0.100\", \"198.19.0.254:80\", \"198.19.0.254\", \"198.19.0.254\", \"224.0.0.1\", \"198.18.0.3\", \"198.19.0.11\"]\n", []string{
			`t.toml:14: ha.garp_refresh: 10ms is too short; write at least 100ms, or "0s" to announce only on takeover (default 10s)`,
			`t.toml:15: ha.floating[1]: 198.18.0.100 is a virtual server address, which moves with the active node anyway; remove it here`,
			`t.toml:15: ha.floating[2]: "198.19.0.254:80" is not an IP address; write one without a port, e.g. "198.19.0.254"`,
			`t.toml:15: ha.floating[4]: 198.19.0.254 is already listed as ha.floating[3]; list each address once`,
			`t.toml:15: ha.floating[5]: 224.0.0.1 is a multicast address and cannot float between nodes`,
			`t.toml:15: ha.floating[6]: 198.18.0.3 is this node's listen address, which must stay on this node; float another address`,
			`t.toml:15: ha.floating[7]: 198.19.0.11 is a real server of virtual server 198.18.0.100:80: the active node would announce it as its own and cut that server off; float another address`,
		}},
		{"key file relative", "listen = \"198.18.0.3:8405\"\npeers = [\"198.18.0.4:8405\"]\nkey_file = \"ha.key\"\n", []string{
			`t.toml:13: ha.key_file: "ha.key" is not an absolute path; write one starting with /, e.g. key_file = "/etc/govs/ha.key"`,
		}},
		{"key file open to others", fmt.Sprintf("listen = \"198.18.0.3:8405\"\npeers = [\"198.18.0.4:8405\"]\nkey_file = %q\n", open), []string{
			fmt.Sprintf("t.toml:13: ha.key_file: %s has mode 0644, so others than its owner may read the secret; run `chmod 600 %s`", open, open),
		}},
		{"key file short", fmt.Sprintf("listen = \"198.18.0.3:8405\"\npeers = [\"198.18.0.4:8405\"]\nkey_file = %q\n", short), []string{
			fmt.Sprintf("t.toml:13: ha.key_file: %s holds 4 bytes of key; write at least 16 random bytes: `head -c 32 /dev/urandom | base64 > %s`", short, short),
		}},
		{"key file missing", fmt.Sprintf("listen = \"198.18.0.3:8405\"\npeers = [\"198.18.0.4:8405\"]\nkey_file = %q\n", missing), []string{
			fmt.Sprintf("t.toml:13: ha.key_file: cannot use %s: stat %s: no such file or directory; create it with the same secret on every node: `head -c 32 /dev/urandom | base64 > %s; chmod 600 %s`", missing, missing, missing, missing),
		}},
		{"key file a directory", fmt.Sprintf("listen = \"198.18.0.3:8405\"\npeers = [\"198.18.0.4:8405\"]\nkey_file = %q\n", dir), []string{
			fmt.Sprintf("t.toml:13: ha.key_file: %s is not a regular file; write the shared secret into a file", dir),
		}},
		{"unknown key", ok + "vrid = 5\n", []string{
			`t.toml:14: ha.vrid: unknown key; valid keys in [ha] are listen, peers, priority, key_file, advert_interval, dead_after, preempt, preempt_delay, garp_refresh, floating`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParseErrors(t, haBase(tt.body), LoadOptions{}, tt.want) })
	}
	t.Run("shutdown_drain with [ha]", func(t *testing.T) {
		checkParseErrors(t, "shutdown_drain = \"5s\"\n"+haBase(ok), LoadOptions{}, []string{
			`t.toml:1: shutdown_drain: applies to a node without [ha]; an HA node hands the VIPs to a peer when it stops instead: remove shutdown_drain`,
		})
	})
	t.Run("shutdown_drain bad", func(t *testing.T) {
		checkParseErrors(t, "shutdown_drain = \"-1s\"\n"+dp, LoadOptions{}, []string{
			`t.toml:1: shutdown_drain: "-1s" is negative; write a duration of zero or more, e.g. "5s"`,
		})
		checkParseErrors(t, "shutdown_drain = 5\n"+dp, LoadOptions{}, []string{
			`t.toml:1: shutdown_drain: is an integer; write a quoted Go duration, e.g. "5s"`,
		})
	})
	t.Run("shutdown_drain zero", func(t *testing.T) {
		c, err := Parse([]byte("shutdown_drain = \"0s\"\n"+dp), "t.toml", LoadOptions{})
		if err != nil || c.ShutdownDrain != 0 {
			t.Errorf("shutdown_drain = \"0s\": %v, %v", c, err)
		}
	})
	t.Run("ha as a value", func(t *testing.T) {
		checkParseErrors(t, "ha = 1\n"+dp, LoadOptions{}, []string{
			`t.toml:1: ha: is an integer but must be a table; write [ha] on a line of its own, followed by its keys`,
		})
	})
	t.Run("listen not on this host", func(t *testing.T) {
		onHost := LoadOptions{AddressInterface: func(a netip.Addr) string {
			if a == netip.MustParseAddr("198.18.0.3") {
				return "l0"
			}
			return ""
		}}
		if _, err := Parse([]byte(haBase(ok)), "t.toml", onHost); err != nil {
			t.Errorf("listen on an address of l0: %v", err)
		}
		checkParseErrors(t, haBase(strings.Replace(ok, "198.18.0.3:8405", "198.18.0.9:8405", 1)), onHost, []string{
			`t.toml:11: ha.listen: 198.18.0.9 is not an address of this host (of none of its interfaces, in this network namespace): listen on one of its own`,
		})
	})
	t.Run("SkipFileChecks", func(t *testing.T) {
		src := haBase(fmt.Sprintf("listen = \"198.18.0.3:8405\"\npeers = [\"198.18.0.4:8405\"]\nkey_file = %q\n", missing))
		if _, err := Parse([]byte(src), "t.toml", LoadOptions{SkipFileChecks: true}); err != nil {
			t.Errorf("with SkipFileChecks: %v", err)
		}
	})
}
