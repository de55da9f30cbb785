package bench

import (
	"fmt"
	"net/netip"

	"github.com/govs/govs/compile"
	"github.com/govs/govs/config"
	"github.com/govs/govs/dataplane"
)

// Synthetic MAC addresses: a port's own address ends in its index, a real server's in its ID.
var (
	portMACPrefix = [4]byte{0x02, 0x67, 0x76, 0x50}
	realMACPrefix = [4]byte{0x02, 0x67, 0x76, 0x52}
)

func portMAC(i int) [6]byte {
	return [6]byte{portMACPrefix[0], portMACPrefix[1], portMACPrefix[2], portMACPrefix[3], byte(i >> 8), byte(i)}
}

func realMAC(id uint16) [6]byte {
	return [6]byte{realMACPrefix[0], realMACPrefix[1], realMACPrefix[2], realMACPrefix[3], byte(id >> 8), byte(id)}
}

// realOfMAC returns the real-server ID a synthetic MAC stands for.
func realOfMAC(b []byte) (uint16, bool) {
	if len(b) < 6 || b[0] != realMACPrefix[0] || b[1] != realMACPrefix[1] || b[2] != realMACPrefix[2] || b[3] != realMACPrefix[3] {
		return 0, false
	}
	return uint16(b[4])<<8 | uint16(b[5]), true
}

// buildTables builds the data plane's tables from cfg as the daemon does (the same compile), without
// a kernel: every real server is resolved to a synthetic MAC of its own on the last configured
// interface (clients arrive on the first; with one interface, both are port 0).
func buildTables(cfg *config.Config) (*dataplane.Tables, error) {
	if len(cfg.Dataplane.Interfaces) == 0 {
		return nil, fmt.Errorf("the config lists no interfaces; list at least one in [dataplane] interfaces")
	}
	t, err := compile.New().Compile(cfg, syntheticHops{port: len(cfg.Dataplane.Interfaces) - 1})
	if err != nil {
		return nil, err
	}
	t.Gen = 1
	return t, nil
}

// syntheticHops puts every real server, directly attached, on port with the MAC realMAC(its ID),
// reached from tunnelSrc4 or tunnelSrc6 (the outer source of tun).
type syntheticHops struct{ port int }

// The balancer's address towards every real server in a replay: only tun writes it, into the outer
// header.
var (
	tunnelSrc4 = netip.MustParseAddr("198.18.0.1")
	tunnelSrc6 = netip.MustParseAddr("2001:2::1")
)

func (h syntheticHops) NextHop(id uint16, addr netip.Addr) (compile.Hop, bool) {
	src := tunnelSrc6
	if addr.Is4() {
		src = tunnelSrc4
	}
	return compile.Hop{Port: h.port, MAC: realMAC(id), OnLink: true, Src: src}, true
}
