// Package flow holds the 5-tuple that the parser produces, the connection table keys on and the
// schedulers hash: one value type, so a frame's tuple reaches the table and the scheduler as
// parsed, never copied field by field between look-alike structs. It imports nothing, so any
// package may use it without pulling in another's code.
package flow

// Tuple is one direction of a flow: source and destination addresses and ports and the IP
// protocol. IPv4 addresses are IPv4-mapped (::ffff:a.b.c.d), so one type serves both families.
// A Tuple holds no pointers and is comparable with ==.
type Tuple struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
}
