package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/sched"
)

// vsWith is vsHead (lines 3-7 after dp) with scheduler name and extra lines from line 8 on, then a
// real server.
func vsWith(scheduler, extra string) string {
	head := strings.Replace(vsHead, `"rr"`, `"`+scheduler+`"`, 1)
	return head + extra + rs
}

func TestParseErrorsExtras(t *testing.T) {
	udp := func(s string) string { return strings.Replace(s, `"tcp"`, `"udp"`, 1) }
	v6 := func(s string) string {
		return strings.NewReplacer("198.18.0.100:80", "[2001:2::100]:80", "198.19.0.11:80", "[2001:2::11]:80").Replace(s)
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		// [conntrack].
		{
			name: "conntrack max_entries out of range",
			src:  dp + "[conntrack]\nmax_entries = 0\n",
			want: []string{`t.toml:4: conntrack.max_entries: 0 is out of range; write a number of connections from 1 to 134217728 (default 1048576)`},
		},
		{
			name: "conntrack max_entries too big",
			src:  dp + "[conntrack]\nmax_entries = 134217729\n",
			want: []string{`t.toml:4: conntrack.max_entries: 134217729 is out of range; write a number of connections from 1 to 134217728 (default 1048576)`},
		},
		{
			name: "conntrack max_entries as string",
			src:  dp + "[conntrack]\nmax_entries = \"1M\"\n",
			want: []string{`t.toml:4: conntrack.max_entries: is a string; write an integer from 1 to 134217728, e.g. max_entries = 1048576`},
		},
		{
			name: "conntrack full_policy unknown",
			src:  dp + "[conntrack]\nfull_policy = \"lru\"\n",
			want: []string{`t.toml:4: conntrack.full_policy: "lru" is not a policy; write "drop_new" (default: refuse new connections) or "evict_oldest_idle" (evict the connection idle the longest)`},
		},
		{
			name: "conntrack full_policy upper case",
			src:  dp + "[conntrack]\nfull_policy = \"DROP_NEW\"\n",
			want: []string{`t.toml:4: conntrack.full_policy: "DROP_NEW" is not a policy; write "drop_new" (default: refuse new connections) or "evict_oldest_idle" (evict the connection idle the longest) (names are lower case: "drop_new")`},
		},
		{
			name: "conntrack full_policy not a string",
			src:  dp + "[conntrack]\nfull_policy = true\n",
			want: []string{`t.toml:4: conntrack.full_policy: is a boolean; write "drop_new" or "evict_oldest_idle"`},
		},
		{
			name: "conntrack expire_nodest_conn quoted",
			src:  dp + "[conntrack]\nexpire_nodest_conn = \"yes\"\n",
			want: []string{`t.toml:4: conntrack.expire_nodest_conn: is a string; write expire_nodest_conn = true or false (unquoted)`},
		},
		{
			name: "conntrack unknown key",
			src:  dp + "[conntrack]\nmax_entrie = 5\n",
			want: []string{`t.toml:4: conntrack.max_entrie: unknown key; valid keys in [conntrack] are max_entries, full_policy, expire_nodest_conn (did you mean max_entries?)`},
		},
		{
			name: "conntrack as a value",
			src:  "conntrack = 5\n" + dp,
			want: []string{`t.toml:1: conntrack: is an integer but must be a table; write [conntrack] on a line of its own, followed by its keys`},
		},
		// [timeouts], the TCP states.
		{
			name: "tcp state timeouts",
			src: dp + "[timeouts]\ntcp_syn_recv = \"0s\"\ntcp_syn_sent = \"-1s\"\ntcp_time_wait = \"2 minutes\"\n" +
				"tcp_close = 10\ntcp_close_wait = \"\"\ntcp_last_ack = \"30s\"\ntcp_lastack = \"30s\"\n",
			want: []string{
				`t.toml:4: timeouts.tcp_syn_recv: "0s" is not positive; write a duration greater than zero, e.g. "1m0s"`,
				`t.toml:5: timeouts.tcp_syn_sent: "-1s" is not positive; write a duration greater than zero, e.g. "2m0s"`,
				`t.toml:6: timeouts.tcp_time_wait: "2 minutes" is not a duration; write a Go duration such as "2m0s" or "15m"`,
				`t.toml:7: timeouts.tcp_close: is an integer; write a quoted Go duration, e.g. "10s"`,
				`t.toml:8: timeouts.tcp_close_wait: "" is not a duration; write a Go duration such as "1m0s" or "15m"`,
				`t.toml:10: timeouts.tcp_lastack: unknown key; valid keys in [timeouts] are tcp, tcp_fin, udp, tcp_syn_recv, tcp_syn_sent, tcp_time_wait, tcp_close, tcp_close_wait, tcp_last_ack (did you mean tcp_last_ack?)`,
			},
		},
		// scheduler_flags.
		{
			name: "flag of another scheduler",
			src:  dp + vsWith("wrr", "scheduler_flags = [\"sh-port\"]\n"),
			want: []string{`t.toml:8: virtual_server[1].scheduler_flags[1]: flag "sh-port" does not apply to scheduler "wrr": sh-port is for the sh or dh scheduler; remove it or write scheduler = "sh"`},
		},
		{
			name: "mh flag on sh, default scheduler",
			src:  dp + strings.Replace(vsHead, "scheduler = \"rr\"\n", "scheduler_flags = [\"mh-fallback\"]\n", 1) + rs,
			want: []string{`t.toml:6: virtual_server[1].scheduler_flags[1]: flag "mh-fallback" does not apply to scheduler "wlc": mh-fallback is for the mh scheduler; remove it or write scheduler = "mh"`},
		},
		{
			name: "unknown flag",
			src:  dp + vsWith("sh", "scheduler_flags = [\"sh-fallback\", \"sh-ports\"]\n"),
			want: []string{`t.toml:8: virtual_server[1].scheduler_flags[2]: unknown scheduler flag "sh-ports" at offset 0 in "sh-ports": use sh-fallback, sh-port (sh, dh) or mh-fallback, mh-port (mh)`},
		},
		{
			name: "duplicate flag, also inside a comma list",
			src:  dp + vsWith("sh", "scheduler_flags = [\n  \"sh-port\",\n  \"sh-fallback,sh-port\",\n]\n"),
			want: []string{`t.toml:10: virtual_server[1].scheduler_flags[2]: flag "sh-port" is already listed; remove the duplicate`},
		},
		{
			name: "flags as a string",
			src:  dp + vsWith("sh", "scheduler_flags = \"sh-port\"\n"),
			want: []string{`t.toml:8: virtual_server[1].scheduler_flags: is a string; write a list of flags, e.g. scheduler_flags = ["sh-fallback", "sh-port"]`},
		},
		{
			name: "flag not a string",
			src:  dp + vsWith("sh", "scheduler_flags = [1]\n"),
			want: []string{`t.toml:8: virtual_server[1].scheduler_flags[1]: is an integer; flags are strings, e.g. scheduler_flags = ["sh-fallback", "sh-port"]`},
		},
		{
			name: "flags with an unknown scheduler report only the scheduler",
			src:  dp + vsWith("hash", "scheduler_flags = [\"sh-port\"]\n"),
			want: []string{`t.toml:6: virtual_server[1].scheduler: unknown scheduler "hash"; use one of the IPVS schedulers dh, fo, lblc, lblcr, lc, mh, nq, ovf, rr, sed, sh, twos, wlc, wrr (omit it for wlc)`},
		},
		// mh_table_size.
		{
			name: "mh table size not a prime",
			src:  dp + vsWith("mh", "mh_table_size = 65536\n"),
			want: []string{`t.toml:8: virtual_server[1].mh_table_size: 65536 is not a prime; Maglev needs a prime table size, e.g. 65537 (the next prime), well above 100 × the number of real servers`},
		},
		{
			name: "mh table size too big",
			src:  dp + vsWith("mh", "mh_table_size = 4194319\n"),
			want: []string{`t.toml:8: virtual_server[1].mh_table_size: 4194319 is out of range; write a prime from 2 to 4194301, well above 100 × the number of real servers (default 65537)`},
		},
		{
			name: "mh table size negative",
			src:  dp + vsWith("mh", "mh_table_size = -7\n"),
			want: []string{`t.toml:8: virtual_server[1].mh_table_size: -7 is out of range; write a prime from 2 to 4194301, well above 100 × the number of real servers (default 65537)`},
		},
		{
			name: "mh table size as string",
			src:  dp + vsWith("mh", "mh_table_size = \"65537\"\n"),
			want: []string{`t.toml:8: virtual_server[1].mh_table_size: is a string; write a prime from 2 to 4194301, e.g. mh_table_size = 65537`},
		},
		{
			name: "mh table size without mh",
			src:  dp + vsWith("sh", "mh_table_size = 65537\n"),
			want: []string{`t.toml:8: virtual_server[1].mh_table_size: is only for the mh scheduler (Maglev's lookup table), not "sh"; remove it or write scheduler = "mh"`},
		},
		// Persistence.
		{
			name: "persistence netmask without timeout",
			src:  dp + vsWith("rr", "persistence_netmask = 24\n"),
			want: []string{`t.toml:8: virtual_server[1].persistence_netmask: has no effect without persistence: add persistence_timeout = "300s" to this virtual server, or remove persistence_netmask`},
		},
		{
			name: "persistence netmask with zero timeout",
			src:  dp + vsWith("rr", "persistence_timeout = \"0s\"\npersistence_netmask = 24\n"),
			want: []string{`t.toml:9: virtual_server[1].persistence_netmask: has no effect without persistence: add persistence_timeout = "300s" to this virtual server, or remove persistence_netmask`},
		},
		{
			name: "persistence timeout bad, netmask not blamed",
			src:  dp + vsWith("rr", "persistence_timeout = \"5 min\"\npersistence_netmask = 24\n"),
			want: []string{`t.toml:8: virtual_server[1].persistence_timeout: "5 min" is not a duration; write a Go duration such as "300s" or "15m" (0 or omitted = no persistence)`},
		},
		{
			name: "persistence timeout negative",
			src:  dp + vsWith("rr", "persistence_timeout = \"-5m\"\n"),
			want: []string{`t.toml:8: virtual_server[1].persistence_timeout: "-5m" is negative; write a duration such as "300s" (0 or omitted = no persistence)`},
		},
		{
			name: "persistence timeout as integer seconds",
			src:  dp + vsWith("rr", "persistence_timeout = 300\n"),
			want: []string{`t.toml:8: virtual_server[1].persistence_timeout: is an integer; write a quoted Go duration, e.g. persistence_timeout = "300s"`},
		},
		{
			name: "persistence netmask IPv4 out of range",
			src:  dp + vsWith("rr", "persistence_timeout = \"300s\"\npersistence_netmask = 33\n"),
			want: []string{`t.toml:9: virtual_server[1].persistence_netmask: 33 is out of range for IPv4 virtual server 198.18.0.100:80; write a prefix length from 0 to 32`},
		},
		{
			name: "persistence netmask IPv6 out of range",
			src:  dp + v6(vsWith("rr", "persistence_timeout = \"300s\"\npersistence_netmask = 129\n")),
			want: []string{`t.toml:9: virtual_server[1].persistence_netmask: 129 is out of range for IPv6 virtual server [2001:2::100]:80; write a prefix length from 0 to 128`},
		},
		{
			name: "persistence netmask dotted for IPv6",
			src:  dp + v6(vsWith("rr", "persistence_timeout = \"300s\"\npersistence_netmask = \"255.255.255.0\"\n")),
			want: []string{`t.toml:9: virtual_server[1].persistence_netmask: dotted mask "255.255.255.0" is for IPv4 but the virtual server [2001:2::100]:80 is IPv6; write a prefix length from 0 to 128`},
		},
		{
			name: "persistence netmask not contiguous",
			src:  dp + vsWith("rr", "persistence_timeout = \"300s\"\npersistence_netmask = \"255.0.255.0\"\n"),
			want: []string{`t.toml:9: virtual_server[1].persistence_netmask: "255.0.255.0" is not a contiguous mask (ones then zeros); write a prefix length such as 24 or a mask such as "255.255.255.0"`},
		},
		{
			name: "persistence netmask garbage string",
			src:  dp + vsWith("rr", "persistence_timeout = \"300s\"\npersistence_netmask = \"/24\"\n"),
			want: []string{`t.toml:9: virtual_server[1].persistence_netmask: "/24" is not a netmask; write a prefix length such as 24, or for IPv4 a dotted mask such as "255.255.255.0"`},
		},
		{
			name: "persistence netmask float",
			src:  dp + vsWith("rr", "persistence_timeout = \"300s\"\npersistence_netmask = 24.0\n"),
			want: []string{`t.toml:9: virtual_server[1].persistence_netmask: is a float; write a prefix length such as persistence_netmask = 24, or for IPv4 a dotted mask such as "255.255.255.0"`},
		},
		// one_packet.
		{
			name: "one_packet on tcp",
			src:  dp + vsWith("rr", "one_packet = true\n"),
			want: []string{`t.toml:8: virtual_server[1].one_packet: is for UDP only: a TCP connection spans many packets and must stay on one real server; remove one_packet or use protocol = "udp"`},
		},
		{
			name: "one_packet quoted",
			src:  dp + udp(vsWith("rr", "one_packet = \"true\"\n")),
			want: []string{`t.toml:8: virtual_server[1].one_packet: is a string; write one_packet = true or false (unquoted)`},
		},
		// Thresholds.
		{
			name: "lower threshold without upper",
			src:  dp + vsHead + rs + "lower_threshold = 10\n",
			want: []string{`t.toml:10: virtual_server[1].real_server[1].lower_threshold: needs upper_threshold: new connections resume below lower_threshold only after they stopped at upper_threshold; add upper_threshold, or remove lower_threshold`},
		},
		{
			name: "lower threshold with upper 0",
			src:  dp + vsHead + rs + "upper_threshold = 0\nlower_threshold = 10\n",
			want: []string{`t.toml:11: virtual_server[1].real_server[1].lower_threshold: has no effect with upper_threshold = 0 (no limit); set upper_threshold above it, or remove lower_threshold`},
		},
		{
			name: "lower above upper",
			src:  dp + vsHead + rs + "upper_threshold = 100\nlower_threshold = 101\n",
			want: []string{`t.toml:11: virtual_server[1].real_server[1].lower_threshold: 101 is above upper_threshold 100; write a value from 0 to 100 (omitted or 0 = 75, three quarters of it as in IPVS)`},
		},
		{
			name: "thresholds out of range and wrong type",
			src:  dp + vsHead + rs + "upper_threshold = 2147483648\n" + rs + "upper_threshold = -1\n" + rs + "upper_threshold = \"100\"\n",
			want: []string{
				`t.toml:10: virtual_server[1].real_server[1].upper_threshold: 2147483648 is out of range; write a number of connections from 0 to 2147483647 (0 = no limit)`,
				`t.toml:13: virtual_server[1].real_server[2].upper_threshold: -1 is out of range; write a number of connections from 0 to 2147483647 (0 = no limit)`,
				`t.toml:16: virtual_server[1].real_server[3].upper_threshold: is a string; write an integer number of connections from 0 to 2147483647 (0 = no limit)`,
			},
		},
		{
			name: "threshold types",
			src:  dp + vsHead + "real_server = [\n  { address = \"198.19.0.11:80\", upper_threshold = -1 },\n  { address = \"198.19.0.12:80\", upper_threshold = 10, lower_threshold = 1.5 },\n]\n",
			want: []string{
				`t.toml:9: virtual_server[1].real_server[1].upper_threshold: -1 is out of range; write a number of connections from 0 to 2147483647 (0 = no limit)`,
				`t.toml:10: virtual_server[1].real_server[2].lower_threshold: is a float; write an integer number of connections from 0 to 2147483647 (0 = no limit)`,
			},
		},
		{
			name: "unknown key in real server suggests threshold",
			src:  dp + vsHead + rs + "upper_treshold = 5\n",
			want: []string{`t.toml:10: virtual_server[1].real_server[1].upper_treshold: unknown key; valid keys in [[virtual_server.real_server]] are address, weight, upper_threshold, lower_threshold, health_check (did you mean upper_threshold?)`},
		},
		{
			name: "unknown key in virtual server suggests persistence",
			src:  dp + vsWith("rr", "persistence_timout = \"300s\"\n"),
			want: []string{`t.toml:8: virtual_server[1].persistence_timout: unknown key; valid keys in [[virtual_server]] are address, protocol, scheduler, scheduler_flags, mh_table_size, method, tunnel, tunnel_port, local_addresses, persistence_timeout, persistence_netmask, one_packet, real_server, health_check, sorry_server, quorum (did you mean persistence_timeout?)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParseErrors(t, tt.src, LoadOptions{}, tt.want)
		})
	}
}

// TestParseExtrasValid checks what the new keys put into the model, defaults included.
func TestParseExtrasValid(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, vs VirtualServer)
	}{
		{
			name: "scheduler omitted is wlc",
			src:  dp + strings.Replace(vsHead, "scheduler = \"rr\"\n", "", 1) + rs,
			check: func(t *testing.T, vs VirtualServer) {
				if vs.Scheduler != sched.DefaultScheduler || vs.SchedulerFlags != nil || vs.MHTableSize != 0 {
					t.Errorf("got scheduler %q flags %q mh %d, want wlc, none, 0", vs.Scheduler, vs.SchedulerFlags, vs.MHTableSize)
				}
			},
		},
		{
			name: "scheduler empty is wlc",
			src:  dp + vsWith("", ""),
			check: func(t *testing.T, vs VirtualServer) {
				if vs.Scheduler != "wlc" {
					t.Errorf("Scheduler = %q, want wlc", vs.Scheduler)
				}
			},
		},
		{
			name: "flags as a comma list and an empty list",
			src:  dp + vsWith("mh", "scheduler_flags = [\"mh-port, mh-fallback\"]\n") + strings.Replace(vsWith("sh", "scheduler_flags = []\n"), "tcp", "udp", 1),
			check: func(t *testing.T, vs VirtualServer) {
				if want := []string{"mh-fallback", "mh-port"}; fmt.Sprint(vs.SchedulerFlags) != fmt.Sprint(want) {
					t.Errorf("SchedulerFlags = %q, want %q (canonical order, one name each)", vs.SchedulerFlags, want)
				}
				if got := vs.SchedOptions(); got != (sched.Options{Flags: sched.FlagMHFallback | sched.FlagMHPort, MHTableSize: sched.DefaultMHTableSize}) {
					t.Errorf("SchedOptions() = %+v", got)
				}
			},
		},
		{
			name: "mh table size omitted is the default",
			src:  dp + vsWith("mh", ""),
			check: func(t *testing.T, vs VirtualServer) {
				if vs.MHTableSize != sched.DefaultMHTableSize {
					t.Errorf("MHTableSize = %d, want %d", vs.MHTableSize, sched.DefaultMHTableSize)
				}
			},
		},
		{
			name: "mh table size 0 is the default",
			src:  dp + vsWith("mh", "mh_table_size = 0\n"),
			check: func(t *testing.T, vs VirtualServer) {
				if vs.MHTableSize != sched.DefaultMHTableSize {
					t.Errorf("MHTableSize = %d, want %d", vs.MHTableSize, sched.DefaultMHTableSize)
				}
			},
		},
		{
			name: "mh table size smallest and largest",
			src:  dp + vsWith("mh", "mh_table_size = 2\n") + udp4(vsWith("mh", "mh_table_size = 4194301\n")),
			check: func(t *testing.T, vs VirtualServer) {
				if vs.MHTableSize != 2 {
					t.Errorf("MHTableSize = %d, want 2", vs.MHTableSize)
				}
			},
		},
		{
			name: "persistence default netmask IPv4",
			src:  dp + vsWith("rr", "persistence_timeout = \"10m\"\n"),
			check: func(t *testing.T, vs VirtualServer) {
				if vs.PersistenceTimeout != 10*time.Minute || vs.PersistenceNetmask != 32 {
					t.Errorf("persistence %s /%d, want 10m0s /32", vs.PersistenceTimeout, vs.PersistenceNetmask)
				}
			},
		},
		{
			name: "persistence default netmask IPv6",
			src: dp + strings.NewReplacer("198.18.0.100:80", "[2001:2::100]:80", "198.19.0.11:80", "[2001:2::11]:80").
				Replace(vsWith("rr", "persistence_timeout = \"10m\"\n")),
			check: func(t *testing.T, vs VirtualServer) {
				if vs.PersistenceNetmask != 128 {
					t.Errorf("PersistenceNetmask = %d, want 128", vs.PersistenceNetmask)
				}
			},
		},
		{
			name: "persistence netmask 0 groups every client",
			src:  dp + vsWith("rr", "persistence_timeout = \"10m\"\npersistence_netmask = \"0.0.0.0\"\n"),
			check: func(t *testing.T, vs VirtualServer) {
				if vs.PersistenceNetmask != 0 || vs.PersistenceTimeout == 0 {
					t.Errorf("persistence %s /%d, want 10m0s /0", vs.PersistenceTimeout, vs.PersistenceNetmask)
				}
			},
		},
		{
			name: "persistence netmask all ones",
			src:  dp + vsWith("rr", "persistence_timeout = \"10m\"\npersistence_netmask = \"255.255.255.255\"\n"),
			check: func(t *testing.T, vs VirtualServer) {
				if vs.PersistenceNetmask != 32 {
					t.Errorf("PersistenceNetmask = %d, want 32", vs.PersistenceNetmask)
				}
			},
		},
		{
			name: "persistence 0s is none",
			src:  dp + vsWith("rr", "persistence_timeout = \"0s\"\n"),
			check: func(t *testing.T, vs VirtualServer) {
				if vs.PersistenceTimeout != 0 || vs.PersistenceNetmask != 0 {
					t.Errorf("persistence %s /%d, want none", vs.PersistenceTimeout, vs.PersistenceNetmask)
				}
			},
		},
		{
			name: "persistent port-0 service",
			src: dp + strings.NewReplacer("198.18.0.100:80", "198.18.0.100:0", `"nat"`, `"dr"`, "198.19.0.11:80", "198.19.0.11:0").
				Replace(vsWith("sh", "persistence_timeout = \"300s\"\npersistence_netmask = 24\n")) +
				"[[virtual_server.real_server]]\naddress = \"198.19.0.12:0\"\n",
			check: func(t *testing.T, vs VirtualServer) {
				if vs.Address.Port() != 0 || vs.PersistenceTimeout != 300*time.Second || vs.PersistenceNetmask != 24 || vs.RealServers[1].Address.Port() != 0 {
					t.Errorf("got %+v", vs)
				}
			},
		},
		{
			name: "one_packet false on tcp is fine",
			src:  dp + vsWith("rr", "one_packet = false\n"),
			check: func(t *testing.T, vs VirtualServer) {
				if vs.OnePacket {
					t.Errorf("OnePacket = true")
				}
			},
		},
		{
			name: "one_packet on udp",
			src:  dp + udp4(vsWith("rr", "one_packet = true\n")),
			check: func(t *testing.T, vs VirtualServer) {
				if !vs.OnePacket {
					t.Errorf("OnePacket = false")
				}
			},
		},
		{
			name: "thresholds",
			src: dp + vsHead + "real_server = [\n" +
				"  { address = \"198.19.0.1:80\" },\n" +
				"  { address = \"198.19.0.2:80\", upper_threshold = 100 },\n" +
				"  { address = \"198.19.0.3:80\", upper_threshold = 100, lower_threshold = 0 },\n" +
				"  { address = \"198.19.0.4:80\", upper_threshold = 100, lower_threshold = 100 },\n" +
				"  { address = \"198.19.0.5:80\", upper_threshold = 1 },\n" +
				"  { address = \"198.19.0.6:80\", upper_threshold = 2147483647 },\n" +
				"  { address = \"198.19.0.7:80\", upper_threshold = 0 },\n" +
				"]\n",
			check: func(t *testing.T, vs VirtualServer) {
				want := [][2]int{{0, 0}, {100, 75}, {100, 75}, {100, 100}, {1, 0}, {2147483647, 1610612735}, {0, 0}}
				for i, w := range want {
					rs := vs.RealServers[i]
					if rs.UpperThreshold != w[0] || rs.LowerThreshold != w[1] {
						t.Errorf("real server %d: thresholds %d/%d, want %d/%d", i+1, rs.UpperThreshold, rs.LowerThreshold, w[0], w[1])
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.src), "t.toml", LoadOptions{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, c.VirtualServers[0])
			// What config accepts, sched must accept.
			for _, vs := range c.VirtualServers {
				if _, err := sched.New(vs.Scheduler, nil, vs.SchedOptions()); err != nil {
					t.Errorf("sched.New(%q, %+v): %v", vs.Scheduler, vs.SchedOptions(), err)
				}
			}
		})
	}
}

// udp4 turns a tcp virtual server into a udp one on another address, so it can follow the first.
func udp4(s string) string {
	return strings.NewReplacer(`"tcp"`, `"udp"`, "198.18.0.100:80", "198.18.0.99:80").Replace(s)
}

// TestEverySchedulerAccepted: every scheduler sched builds is accepted by name and reaches the model.
func TestEverySchedulerAccepted(t *testing.T) {
	names := sched.Names()
	if len(names) < 14 {
		t.Fatalf("sched.Names() = %q, want the whole IPVS family", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			c, err := Parse([]byte(dp+vsWith(name, "")), "t.toml", LoadOptions{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := c.VirtualServers[0].Scheduler; got != name {
				t.Errorf("Scheduler = %q, want %q", got, name)
			}
		})
	}
}

// TestFlagsMatchSched: each scheduler takes exactly the flags sched.FlagsFor gives it.
func TestFlagsMatchSched(t *testing.T) {
	flags := []string{"sh-fallback", "sh-port", "mh-fallback", "mh-port"}
	for _, name := range sched.Names() {
		for _, flag := range flags {
			t.Run(name+"/"+flag, func(t *testing.T) {
				f, err := sched.ParseFlag(flag)
				if err != nil {
					t.Fatal(err)
				}
				_, err = Parse([]byte(dp+vsWith(name, fmt.Sprintf("scheduler_flags = [%q]\n", flag))), "t.toml", LoadOptions{})
				if want := sched.FlagsFor(name)&f != 0; (err == nil) != want {
					t.Errorf("Parse error %v, want accepted=%v", err, want)
				}
			})
		}
	}
}

// TestMHTableSizeAgreesWithSched: config's bound on mh_table_size is sched's.
func TestMHTableSizeAgreesWithSched(t *testing.T) {
	for _, m := range []int{2, 3, 251, 65537, maxMHTableSize, maxMHTableSize + 1, 4194319, 1, 4, 65536} {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			_, cerr := Parse([]byte(dp+vsWith("mh", fmt.Sprintf("mh_table_size = %d\n", m))), "t.toml", LoadOptions{})
			_, serr := sched.New("mh", nil, sched.Options{MHTableSize: m})
			if (cerr == nil) != (serr == nil) {
				t.Errorf("config says %v, sched says %v", cerr, serr)
			}
		})
	}
}

func TestMaskBits(t *testing.T) {
	tests := []struct {
		mask string
		bits int
		ok   bool
	}{
		{"0.0.0.0", 0, true},
		{"128.0.0.0", 1, true},
		{"255.255.255.0", 24, true},
		{"255.255.255.254", 31, true},
		{"255.255.255.255", 32, true},
		{"255.255.0.255", 0, false},
		{"0.0.0.1", 0, false},
		{"254.255.255.255", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.mask, func(t *testing.T) {
			bits, ok := maskBits(netip.MustParseAddr(tt.mask).As4())
			if bits != tt.bits || ok != tt.ok {
				t.Errorf("maskBits(%s) = %d, %v, want %d, %v", tt.mask, bits, ok, tt.bits, tt.ok)
			}
		})
	}
}

func TestConntrackDefaultsAndValues(t *testing.T) {
	tests := []struct {
		name, table string
		want        Conntrack
	}{
		{"omitted", "", defaultConntrack},
		{"empty table", "[conntrack]\n", defaultConntrack},
		{"bounds", "[conntrack]\nmax_entries = 1\n", Conntrack{MaxEntries: 1, FullPolicy: FullPolicyDropNew}},
		{"max", "[conntrack]\nmax_entries = 134217728\nfull_policy = \"drop_new\"\nexpire_nodest_conn = false\n", Conntrack{MaxEntries: MaxConntrackEntries, FullPolicy: FullPolicyDropNew}},
		{"evict", "[conntrack]\nfull_policy = \"evict_oldest_idle\"\nexpire_nodest_conn = true\n", Conntrack{MaxEntries: DefaultConntrackMaxEntries, FullPolicy: FullPolicyEvictOldestIdle, ExpireNodestConn: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(dp+tt.table), "t.toml", LoadOptions{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.Conntrack != tt.want {
				t.Errorf("Conntrack = %+v, want %+v", c.Conntrack, tt.want)
			}
			if c.Timeouts != defaultTimeouts {
				t.Errorf("Timeouts = %+v, want the IPVS defaults %+v", c.Timeouts, defaultTimeouts)
			}
		})
	}
}

// TestLocalAddressOnHostInterface: a FullNAT local address or a VIP that an interface of this host
// holds is rejected with file:line and field when the host is looked at (govs run, reload, check-config),
// and accepted offline; a spare address passes either way.
func TestLocalAddressOnHostInterface(t *testing.T) {
	src := dp + strings.Replace(vsHead, `"nat"`, `"fullnat"`, 1) +
		"local_addresses = [\"198.19.0.2\", \"198.19.0.1\"]\n" + rs
	onHost := LoadOptions{AddressInterface: func(a netip.Addr) string {
		if a == netip.MustParseAddr("198.19.0.1") {
			return "l1"
		}
		return ""
	}}
	_, err := Parse([]byte(src), "t.toml", onHost)
	want := `t.toml:8: virtual_server[1].local_addresses: 198.19.0.1 is an address of interface l1 of this host; a local address must be on no interface`
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("got %v, want the one error\n%s...", err, want)
	}
	if _, err := Parse([]byte(src), "t.toml", LoadOptions{}); err != nil {
		t.Errorf("offline: %v, want no error (the host is not looked at)", err)
	}
	// A VIP of this host's, the same way.
	vip := dp + strings.Replace(vsHead, `198.18.0.100:80`, `198.19.0.1:80`, 1) + rs
	_, err = Parse([]byte(vip), "t.toml", onHost)
	want = `t.toml:4: virtual_server[1].address: 198.19.0.1 is an address of interface l1 of this host; a virtual server address must be on no interface`
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("got %v, want the one error\n%s...", err, want)
	}
	if got := AddressInterfaceOnHost(netip.MustParseAddr("127.0.0.1")); got != "lo" {
		t.Errorf("AddressInterfaceOnHost(127.0.0.1) = %q, want lo", got)
	}
	if got := AddressInterfaceOnHost(netip.MustParseAddr("198.19.255.254")); got != "" {
		t.Errorf("AddressInterfaceOnHost(198.19.255.254) = %q, want none", got)
	}
}

// TestRealHandles: fullnat virtual servers whose local addresses × real servers come to more real
// server handles than a worker's connection table holds (MaxRealHandles) are refused at the
// virtual server that goes over, with file:line; exactly MaxRealHandles pass.
func TestRealHandles(t *testing.T) {
	src := func(reals int) string {
		var b strings.Builder
		b.WriteString(dp + strings.Replace(vsHead, `"nat"`, `"fullnat"`, 1) + "local_addresses = [")
		for i := range MaxLocalAddresses {
			fmt.Fprintf(&b, "%q, ", netip.AddrFrom4([4]byte{198, 19, 1, byte(i)}))
		}
		b.WriteString("]\n")
		for i := range reals {
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"%s\"\n", netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, 2 + byte(i/256), byte(i)}), 80))
		}
		return b.String()
	}
	if _, err := Parse([]byte(src(MaxRealHandles/MaxLocalAddresses)), "t.toml", LoadOptions{}); err != nil {
		t.Fatalf("%d local addresses × %d real servers: %v, want no error", MaxLocalAddresses, MaxRealHandles/MaxLocalAddresses, err)
	}
	_, err := Parse([]byte(src(MaxRealHandles/MaxLocalAddresses+1)), "t.toml", LoadOptions{})
	want := `t.toml:8: virtual_server[1].local_addresses: 256 local addresses × 257 real servers make 65792 real server handles`
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("got %v, want the one error\n%s...", err, want)
	}
}

// TestLocalAddressUnreachable: a FullNAT local address in no subnet of the [dataplane] interfaces
// is a warning (not an error) naming the address, the interfaces' subnets and what to do, with
// file:line, when the host is looked at; one in a subnet, or the file read offline, is not.
func TestLocalAddressUnreachable(t *testing.T) {
	src := dp + strings.Replace(vsHead, `"nat"`, `"fullnat"`, 1) +
		"local_addresses = [\"198.19.0.2\", \"198.18.9.2\"]\n" + rs
	onHost := LoadOptions{InterfacePrefixes: func(name string) []netip.Prefix {
		if name == "l0" {
			return []netip.Prefix{netip.MustParsePrefix("198.19.0.0/24"), netip.MustParsePrefix("2001:2:0:1::/64")}
		}
		return nil
	}}
	c, err := Parse([]byte(src), "t.toml", onHost)
	if err != nil {
		t.Fatalf("Parse: %v, want a warning only", err)
	}
	want := []string{`t.toml:8: virtual_server[1].local_addresses: local address 198.18.9.2 is in no subnet of the [dataplane] interfaces (l0 198.19.0.0/24, l0 2001:2:0:1::/64): the real servers reach it only by a route to this host; add one on them (via this host's address on their segment), or use a spare address of the real servers' subnet`}
	if got := c.Warnings(); !slices.Equal(got, want) {
		t.Errorf("warnings\n%q\nwant\n%q", got, want)
	}
	c, err = Parse([]byte(src), "t.toml", LoadOptions{})
	if err != nil {
		t.Fatalf("offline: %v", err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("offline: warnings %q; want none (the host is not looked at)", w)
	}
}
