package bench

import (
	"github.com/govs/govs/compile"
	"github.com/govs/govs/config"
	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane"
)

// A flow of the capture (one 5-tuple) is not always one connection of the data plane: as in IPVS,
// a tuple starts a new connection, scheduled afresh and so possibly to another real server, when
//   - a client's bare SYN finds the tuple's connection in TIME_WAIT or CLOSE (after the FIN
//     exchange or a RST: IPVS conn_reuse_mode, dataplane.Worker.forward);
//   - a packet comes after the connection's idle timeout (the table sweeps expired entries
//     lazily, so it may also still find the old one);
//   - the service schedules every datagram on its own (one_packet).
// Anything else that reaches another real server than the connection's splits a live connection:
// a sticky violation. To tell the two apart, the harness follows each flow's connection as the
// data plane does, from the packets the data plane sent, in the order and at the clock it saw
// them: the real server, the TCP state (conntrack's IPVS tables) and the time of the last packet.

// flowConn is what the harness knows of the connection a flow's tuple has in the data plane.
type flowConn struct {
	real  uint16          // real-server ID + 1 it was scheduled to; 0: none yet
	state conntrack.State // TCP state (StateUDP for datagrams)
	local uint8           // FullNAT: the index of its local address in the service's Locals
	lport uint16          // FullNAT: its local port, what the simulated replies go to
	last  uint32          // table tick of its last packet
}

// What a client packet the data plane sent to a real server means for its flow.
type verdict uint8

const (
	sameConn  verdict = iota // the flow's connection, on its real server
	firstConn                // the flow's first connection
	nextConn                 // the tuple started a new connection, legitimately (see above)
	split                    // another real server than the live connection's: a sticky violation
)

// Per real server: what its service makes of a flow.
const (
	realOnePacket = 1 << iota // every datagram is scheduled on its own
	realInputOnly             // no reply tuple (DR): TCP states follow IPVS's INPUT-ONLY table
)

// judge decides verdicts for one replay's tables and timeouts.
type judge struct {
	timeout [conntrack.StateTemplate + 1]uint32 // idle timeout per state, in table ticks
	real    []uint8                             // per real-server ID: realOnePacket, realInputOnly
}

func newJudge(cfg *config.Config, t *dataplane.Tables) *judge {
	j := &judge{real: make([]uint8, len(t.Reals))}
	to := compile.Conntrack(cfg, 1).Timeouts
	for s := range j.timeout {
		// As the table rounds them: up to whole ticks, at least one.
		j.timeout[s] = uint32(max((to.Of(conntrack.State(s))+1<<conntrack.TickShift-1)>>conntrack.TickShift, 1))
	}
	for _, r := range t.Reals {
		if r == nil {
			continue
		}
		s := t.Services[r.Service]
		if s.OnePacket {
			j.real[r.ID] |= realOnePacket
		}
		if s.Method != dataplane.MethodNAT && s.Method != dataplane.MethodFullNAT {
			j.real[r.ID] |= realInputOnly
		}
	}
	return j
}

// client judges a packet of flow f (protocol proto, TCP flags flags) from the client that the data
// plane sent, at now, to real server id, and follows the flow's connection.
func (j *judge) client(f *flowConn, id uint16, proto, flags uint8, now int64) verdict {
	nowT := uint32(now >> conntrack.TickShift)
	rf := j.real[id]
	inputOnly := rf&realInputOnly != 0
	start := func() {
		f.real, f.last = id+1, nowT
		f.state = conntrack.StateUDP
		if proto == 6 {
			// A new connection starts in SYN_RECV and takes its first packet's flags (newConn, then
			// TouchConn).
			f.state = conntrack.NextTCPState(conntrack.StateSynRecv, conntrack.DirOriginal, flags, inputOnly)
		}
	}
	if f.real == 0 {
		start()
		return firstConn
	}
	const synMask = conntrack.TCPFlagSYN | conntrack.TCPFlagACK | conntrack.TCPFlagFIN | conntrack.TCPFlagRST
	var must, may bool
	switch {
	case rf&realOnePacket != 0:
		must = true
	case proto == 6 && flags&synMask == conntrack.TCPFlagSYN &&
		(f.state == conntrack.StateTimeWait || f.state == conntrack.StateClose):
		must = true
	case int32(nowT-f.last-j.timeout[f.state]) >= 0 && (proto != 6 || flags&synMask&^conntrack.TCPFlagFIN == conntrack.TCPFlagSYN):
		// Idle past its timeout (within a tick): the sweep may have removed the connection, and
		// then this packet, if it can open one, started a new one.
		may = true
	}
	if must || may && f.real != id+1 {
		start()
		return nextConn
	}
	if f.real != id+1 {
		return split // the flow keeps its connection's real server: each later stray packet counts
	}
	if proto == 6 {
		f.state = conntrack.NextTCPState(f.state, conntrack.DirOriginal, flags, inputOnly)
	}
	f.last = nowT
	return sameConn
}

// reply follows flow f's connection through a real server's packet (NAT) the data plane sent to
// the client at now.
func (j *judge) reply(f *flowConn, proto, flags uint8, now int64) {
	if f.real == 0 {
		return
	}
	if proto == 6 {
		f.state = conntrack.NextTCPState(f.state, conntrack.DirReply, flags, false)
	}
	f.last = uint32(now >> conntrack.TickShift)
}
