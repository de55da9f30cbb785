package conntrack

// Dir says which of a connection's two tuples a packet matched.
type Dir uint8

const (
	// DirOriginal is the client → VIP tuple.
	DirOriginal Dir = iota
	// DirReply is the real server → client tuple (NAT replies).
	DirReply
)

func (d Dir) String() string {
	switch d {
	case DirOriginal:
		return "original"
	case DirReply:
		return "reply"
	}
	return "Dir(?)"
}

// State is a connection's protocol state: IPVS's TCP states in IPVS's order, then UDP (every
// datagram protocol: idle timeout only) and Template (a persistence template).
type State uint8

const (
	StateNone        State = iota // no segment classified yet
	StateEstablished              // handshake finished: the only "active" state
	StateSynSent                  // server sent a SYN first (seen only as a reply)
	StateSynRecv                  // client SYN seen, handshake not finished
	StateFinWait                  // a side sent FIN
	StateTimeWait                 // both FINs seen: lingers for retransmissions
	StateClose                    // reset or closed
	StateCloseWait                // client FIN seen while established
	StateLastAck                  // the last ACK is outstanding
	StateListen                   // (IPVS legacy; reached by no transition here)
	StateSynAck                   // (IPVS legacy; SYN-ACK before the client's ACK)
	StateUDP                      // datagram flow: idle timeout only
	StateTemplate                 // persistence template
	numStates
	numTCPStates = StateUDP
)

var stateNames = [numStates]string{
	"NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE", "CLOSE_WAIT",
	"LAST_ACK", "LISTEN", "SYNACK", "UDP", "TEMPLATE",
}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "State(?)"
}

// IsActive reports whether a connection in state s counts as active for its real server, as in
// IPVS: ESTABLISHED is active, every other state inactive. Templates count as neither.
func IsActive(s State) bool { return s == StateEstablished }

// TCP header flag bits, as in the TCP header's flags byte (RFC 9293 §3.1).
const (
	TCPFlagFIN uint8 = 0x01
	TCPFlagSYN uint8 = 0x02
	TCPFlagRST uint8 = 0x04
	TCPFlagACK uint8 = 0x10
)

// Timeouts are the idle times allowed per state, in nanoseconds. A zero field means IPVS's default
// (net/netfilter/ipvs/ip_vs_proto_tcp.c tcp_timeouts, ip_vs_proto_udp.c): the config's [timeouts]
// tcp, tcp_fin and udp set TCP, TCPFin and UDP, like ipvsadm --set.
type Timeouts struct {
	TCP          int64 // ESTABLISHED, default 15m
	TCPFin       int64 // FIN_WAIT, default 2m
	TCPSynRecv   int64 // SYN_RECV (and NONE), default 1m
	TCPClose     int64 // CLOSE, default 10s
	UDP          int64 // UDP, default 5m
	TCPSynSent   int64 // SYN_SENT, default 2m
	TCPTimeWait  int64 // TIME_WAIT, default 2m
	TCPCloseWait int64 // CLOSE_WAIT, default 60s
	TCPLastAck   int64 // LAST_ACK, default 30s
	TCPListen    int64 // LISTEN, default 2m
	TCPSynAck    int64 // SYNACK, default 2m
}

// DefaultTimeouts returns IPVS's defaults for every state.
func DefaultTimeouts() Timeouts {
	const s = int64(1e9)
	return Timeouts{
		TCP: 900 * s, TCPFin: 120 * s, TCPSynRecv: 60 * s, TCPClose: 10 * s, UDP: 300 * s,
		TCPSynSent: 120 * s, TCPTimeWait: 120 * s, TCPCloseWait: 60 * s, TCPLastAck: 30 * s,
		TCPListen: 120 * s, TCPSynAck: 120 * s,
	}
}

// Of returns the idle timeout of state s in nanoseconds (0 for StateTemplate: a template's timeout
// is its service's persistence timeout).
func (to *Timeouts) Of(s State) int64 {
	d := DefaultTimeouts()
	pick := func(v, def int64) int64 {
		if v > 0 {
			return v
		}
		return def
	}
	switch s {
	case StateNone, StateSynRecv:
		return pick(to.TCPSynRecv, d.TCPSynRecv)
	case StateEstablished:
		return pick(to.TCP, d.TCP)
	case StateSynSent:
		return pick(to.TCPSynSent, d.TCPSynSent)
	case StateFinWait:
		return pick(to.TCPFin, d.TCPFin)
	case StateTimeWait:
		return pick(to.TCPTimeWait, d.TCPTimeWait)
	case StateClose:
		return pick(to.TCPClose, d.TCPClose)
	case StateCloseWait:
		return pick(to.TCPCloseWait, d.TCPCloseWait)
	case StateLastAck:
		return pick(to.TCPLastAck, d.TCPLastAck)
	case StateListen:
		return pick(to.TCPListen, d.TCPListen)
	case StateSynAck:
		return pick(to.TCPSynAck, d.TCPSynAck)
	case StateUDP:
		return pick(to.UDP, d.UDP)
	}
	return 0
}

// TCP events, in IPVS's priority order of tcp_state_idx: RST beats SYN beats FIN beats ACK.
const (
	evSYN = iota
	evFIN
	evACK
	evRST
	numEvents
)

// Which table of tcpNext a segment uses: IPVS's INPUT (client → balancer), OUTPUT (real server →
// client, NAT only) and INPUT-ONLY (connections whose replies bypass the balancer: DR, tunnel).
const (
	tabInput = iota
	tabOutput
	tabInputOnly
)

// tcpNext is IPVS's tcp_states table (current kernels, where a bare ACK in NONE closes instead of
// picking the connection up mid-stream): [table][event][current state] → next state.
var tcpNext = func() (t [3][numEvents][numTCPStates]State) {
	const (
		NO, ES, SS, SR, FW = StateNone, StateEstablished, StateSynSent, StateSynRecv, StateFinWait
		TW, CL, CW, LA     = StateTimeWait, StateClose, StateCloseWait, StateLastAck
		LI, SA             = StateListen, StateSynAck
	)
	t[tabInput] = [numEvents][numTCPStates]State{
		//     NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
		evSYN: {SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR},
		evFIN: {CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW},
		evACK: {CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES},
		evRST: {CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR},
	}
	t[tabOutput] = [numEvents][numTCPStates]State{
		evSYN: {SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR},
		evFIN: {TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW},
		evACK: {ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES},
		evRST: {CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL},
	}
	t[tabInputOnly] = [numEvents][numTCPStates]State{
		evSYN: {SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR},
		evFIN: {CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW},
		evACK: {CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES},
		evRST: {CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL},
	}
	return t
}()

// NextTCPState returns the state after a TCP segment with the given header flags travelling in
// dir, by IPVS's tables. inputOnly selects IPVS's INPUT-ONLY table, for connections whose replies do
// not pass the balancer (DR, tunnel). A segment with none of SYN, FIN, RST, ACK, and any state that
// is not a TCP state, leaves the state as it is.
func NextTCPState(s State, dir Dir, flags uint8, inputOnly bool) State {
	if s >= numTCPStates {
		return s
	}
	var ev int
	switch {
	case flags&TCPFlagRST != 0:
		ev = evRST
	case flags&TCPFlagSYN != 0:
		ev = evSYN
	case flags&TCPFlagFIN != 0:
		ev = evFIN
	case flags&TCPFlagACK != 0:
		ev = evACK
	default:
		return s
	}
	tab := tabInput
	if inputOnly {
		tab = tabInputOnly
	} else if dir == DirReply {
		tab = tabOutput
	}
	return tcpNext[tab][ev][s]
}

// NeedsReschedule reports whether a packet that matched a connection in state s must instead start
// a new connection scheduled afresh (IPVS conn_reuse_mode): a client's bare SYN (no ACK, FIN, RST)
// on a TCP connection that is in TIME_WAIT or CLOSE, or whose real server is gone or has weight 0
// (realUsable false). The caller deletes the old entry and inserts a new one.
func NeedsReschedule(s State, dir Dir, tcpFlags uint8, realUsable bool) bool {
	if dir != DirOriginal || s >= numTCPStates ||
		tcpFlags&(TCPFlagSYN|TCPFlagACK|TCPFlagFIN|TCPFlagRST) != TCPFlagSYN {
		return false
	}
	return s == StateTimeWait || s == StateClose || !realUsable
}
