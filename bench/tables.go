package bench

import (
	"fmt"

	"github.com/govs/govs/config"
	"github.com/govs/govs/daemon"
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

// compile builds the data plane's tables from cfg the way the daemon does, without a kernel:
// service and real-server IDs in config order, every real server resolved to a synthetic MAC on
// the last configured interface (clients arrive on the first), every real server available.
func compile(cfg *config.Config) (*dataplane.Tables, error) {
	if len(cfg.Dataplane.Interfaces) == 0 {
		return nil, fmt.Errorf("the config lists no interfaces; list at least one in [dataplane] interfaces")
	}
	realPort := len(cfg.Dataplane.Interfaces) - 1
	t := &dataplane.Tables{Gen: 1}
	for i, vs := range cfg.VirtualServers {
		if i > 0xffff {
			return nil, fmt.Errorf("more than 65536 virtual servers")
		}
		s := daemon.ServiceFor(&vs, uint16(i))
		for _, rs := range vs.RealServers {
			if len(t.Reals) > 0xffff {
				return nil, fmt.Errorf("more than 65536 real servers")
			}
			id := uint16(len(t.Reals))
			r := daemon.RealFor(&rs, id, s.ID)
			r.Port, r.MAC, r.Resolved = realPort, realMAC(id), true
			t.Reals = append(t.Reals, r)
			s.RealIDs = append(s.RealIDs, id)
		}
		t.Services = append(t.Services, s)
	}
	t.Finish()
	return t, nil
}
