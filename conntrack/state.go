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

// State is a connection's protocol state. The zero value, StateNone, means "not tracked yet".
type State uint8

const (
	StateNone        State = iota // no packet classified yet
	StateSynRecv                  // client SYN seen, handshake not finished
	StateEstablished              // handshake finished (or joined mid-stream)
	StateFinWait                  // one side sent FIN
	StateClose                    // both sides sent FIN, or RST: linger briefly for retransmissions
	StateUDP                      // UDP (and other datagram protocols): idle timeout only
	numStates
)

func (s State) String() string {
	switch s {
	case StateNone:
		return "none"
	case StateSynRecv:
		return "syn-recv"
	case StateEstablished:
		return "established"
	case StateFinWait:
		return "fin-wait"
	case StateClose:
		return "close"
	case StateUDP:
		return "udp"
	}
	return "State(?)"
}

// TCP header flag bits, as in the TCP header's flags byte (RFC 9293 §3.1).
const (
	TCPFlagFIN uint8 = 0x01
	TCPFlagSYN uint8 = 0x02
	TCPFlagRST uint8 = 0x04
	TCPFlagACK uint8 = 0x10
)

// Timeouts are the idle times allowed per state, in nanoseconds.
type Timeouts struct {
	TCP        int64 // StateEstablished
	TCPFin     int64 // StateFinWait
	TCPSynRecv int64 // StateSynRecv (and StateNone)
	TCPClose   int64 // StateClose
	UDP        int64 // StateUDP
}

// DefaultTimeouts returns the IPVS defaults (ipvsadm --set 900 120 300; SYN_RECV 60 s, CLOSE 10 s).
func DefaultTimeouts() Timeouts {
	const s = int64(1e9)
	return Timeouts{TCP: 900 * s, TCPFin: 120 * s, TCPSynRecv: 60 * s, TCPClose: 10 * s, UDP: 300 * s}
}

func (to *Timeouts) of(s State) int64 {
	switch s {
	case StateEstablished:
		return to.TCP
	case StateFinWait:
		return to.TCPFin
	case StateClose:
		return to.TCPClose
	case StateUDP:
		return to.UDP
	}
	return to.TCPSynRecv
}

// tcp event, in IPVS priority order: RST beats SYN beats FIN beats ACK.
const (
	evSYN = iota
	evFIN
	evACK
	evRST
	numEvents
)

// tcpNext is the transition table, simplified from IPVS's tcp_states (both directions seen in NAT;
// DR sees only DirOriginal and the same table works):
//
//	          SYN(orig)            ACK                FIN              FIN
//	none ─────────────► syn-recv ──────► established ─────► fin-wait ─────► close
//	 │ACK                  │FIN                               ▲ SYN(orig): new connection on the
//	 └──► established      └────────────► fin-wait            │ same tuple goes back to syn-recv
//	any ──RST──► close
//
// Rows are [dir][event], columns the current state.
var tcpNext = [2][numEvents][numStates]State{
	DirOriginal: {
		//         None          SynRecv       Established       FinWait       Close         UDP
		evSYN: {StateSynRecv, StateSynRecv, StateEstablished, StateSynRecv, StateSynRecv, StateUDP},
		evFIN: {StateClose, StateFinWait, StateFinWait, StateClose, StateClose, StateUDP},
		evACK: {StateEstablished, StateEstablished, StateEstablished, StateFinWait, StateClose, StateUDP},
		evRST: {StateClose, StateClose, StateClose, StateClose, StateClose, StateUDP},
	},
	DirReply: {
		evSYN: {StateSynRecv, StateSynRecv, StateEstablished, StateFinWait, StateClose, StateUDP},
		evFIN: {StateClose, StateFinWait, StateFinWait, StateClose, StateClose, StateUDP},
		evACK: {StateEstablished, StateSynRecv, StateEstablished, StateFinWait, StateClose, StateUDP},
		evRST: {StateClose, StateClose, StateClose, StateClose, StateClose, StateUDP},
	},
}

// NextTCPState returns the state after a TCP segment with the given header flags travelling in dir,
// and the idle timeout for that state. A segment with none of SYN, FIN, RST, ACK leaves the state as
// it is. StateUDP stays StateUDP. A server's ACK without SYN cannot finish the handshake (only the
// client's ACK does), so a spoofed reply cannot promote a half-open connection.
func NextTCPState(s State, dir Dir, flags uint8, to *Timeouts) (State, int64) {
	if s >= numStates || dir > DirReply {
		return s, to.TCPClose
	}
	ev := -1
	switch {
	case flags&TCPFlagRST != 0:
		ev = evRST
	case flags&TCPFlagSYN != 0:
		ev = evSYN
	case flags&TCPFlagFIN != 0:
		ev = evFIN
	case flags&TCPFlagACK != 0:
		ev = evACK
	}
	if ev >= 0 {
		s = tcpNext[dir][ev][s]
	}
	return s, to.of(s)
}
