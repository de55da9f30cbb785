package dataplane

import (
	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/frame"
	"github.com/govs/govs/flow"
)

// FullNAT (MethodFullNAT) rewrites both ends of a client's packet: the source to one of the
// service's local addresses and a local port, the destination to the real server. The real server
// answers the local address, which govs announces (ARP/NDP) like a VIP, so its replies come back to
// govs whatever its default route; they go out with the VIP as source and the client as
// destination.
//
// A reply carries nothing of the client, so the fanout program sends a frame to a local address
// to worker (local port mod workers) (bpfgen.LocalMember), and each worker allocates only the
// local ports of its own residue class: the reply reaches the worker whose table holds the
// connection, and allocation needs no lock and no other worker's table. A worker's candidate
// (local address, local port) is free when its reply tuple (real server:port → local
// address:port) is not in the worker's table; since no other worker gives out ports of the class,
// no two live connections share a 5-tuple towards a real server. Candidates are taken in turn
// from one rotating counter per worker over every local address and port of its class, so a port
// is given out again only after all the others: after (ports of the class) × (local addresses) new
// connections of the worker, 8064 with one local address and 8 workers. A real server that closed
// the earlier connection first may still hold its tuple in TIME_WAIT (60 s on Linux) and takes the
// new SYN only if its timestamp or sequence number is higher, so the README sizes local addresses
// by that count / 60 s; at most fullnatTries are tried per new connection, and a connection that
// finds none free is dropped as DropFullNATNoPort.

// DefaultLocalPorts is the range of local ports FullNAT allocates from (Service.LocalPortMin and
// LocalPortMax when both are 0): every port above the well-known ones.
var DefaultLocalPorts = [2]uint16{1024, 65535}

// fullnatTries bounds the candidates a new FullNAT connection tries, so that a worker whose ports
// towards a real server are (nearly) all taken spends a bounded time per refused connection.
const fullnatTries = 64

// fullnatState is a worker's FullNAT port allocation state.
type fullnatState struct {
	members uint32     // workers in the fanout group (residue classes); 0 or 1: one class
	next    uint32     // rotating candidate counter
	key     flow.Tuple // allocLocal's and installSynced's lookup key of a reply tuple
}

// SetWorkers tells the worker it is one of n workers sharing the fanout group, whose index is its
// id: it then allocates FullNAT local ports only of its class (port mod n == id). Call it before
// the first frame; without it a worker allocates from every port.
func (w *Worker) SetWorkers(n int) {
	if n > 1 && w.id < n {
		w.fn.members = uint32(n)
	}
}

// localPorts returns the first local port of the worker's class in svc's range, the step between
// its ports and how many there are.
func (w *Worker) localPorts(svc *Service) (first, step, count uint32) {
	lo, hi := uint32(svc.LocalPortMin), uint32(svc.LocalPortMax)
	step = max(w.fn.members, 1)
	class := uint32(w.id) % step
	first = lo + (class+step-lo%step)%step
	if first > hi {
		return first, step, 0
	}
	return first, step, (hi-first)/step + 1
}

// allocLocal picks a free local address and port for a new FullNAT connection of svc to real
// server r at port rport (protocol proto) and fills nc's reply side; false, the drop counted,
// when none of the candidates it tries is free.
func (w *Worker) allocLocal(svc *Service, r *Real, rport uint16, proto uint8, nc *conntrack.NewConn) bool {
	first, step, count := w.localPorts(svc)
	nl := uint32(len(svc.locals))
	if count == 0 || nl == 0 {
		w.drop(DropFullNATNoPort)
		return false
	}
	k := &w.fn.key
	k.Src, k.SrcPort, k.Proto = r.addr, rport, proto
	for range min(fullnatTries, count*nl) {
		c := w.fn.next
		w.fn.next++
		k.Dst, k.DstPort = svc.locals[c%nl], uint16(first+(c/nl%count)*step)
		if _, _, taken := w.ct.Lookup(k); !taken {
			nc.Reply, nc.FullNAT, nc.Local, nc.LocalPort = true, true, k.Dst, k.DstPort
			return true
		}
	}
	w.drop(DropFullNATNoPort)
	return false
}

// fullnatOut rewrites a client's packet of FullNAT connection c (Conn.IsFullNAT) to real server
// r: source the local address and port, destination the real server.
func (w *Worker) fullnatOut(b []byte, p *frame.Parsed, partial int, c *conntrack.Conn, r *Real) {
	la, lport, _ := w.ct.Local(c)
	_, rport := w.ct.Real(c)
	rewriteSrc(b, p, partial, la, lport)
	rewriteDst(b, p, partial, r.addr, rport)
}

// fullnatBack rewrites a real server's reply of FullNAT connection c for the client: source the
// VIP (and service port), destination the client.
func fullnatBack(b []byte, p *frame.Parsed, partial int, c *conntrack.Conn) {
	client, cport := c.Client()
	vip, vport := c.VIP()
	rewriteSrc(b, p, partial, vip, vport)
	rewriteDst(b, p, partial, client, cport)
}

// fullnatOutFast is fullnatOut for the express lane (frame.RewriteFast, finished checksums): false,
// having changed nothing, for a packet RewriteFast declines.
func (w *Worker) fullnatOutFast(b []byte, p *frame.Parsed, c *conntrack.Conn, r *Real) bool {
	la, lport, _ := w.ct.Local(c)
	_, rport := w.ct.Real(c)
	return frame.RewriteFastBoth(b, p, &la, lport, &r.addr, rport)
}

// fullnatBackFast is fullnatBack for the express lane, as fullnatOutFast.
func fullnatBackFast(b []byte, p *frame.Parsed, c *conntrack.Conn) bool {
	client, cport := c.Client()
	vip, vport := c.VIP()
	return frame.RewriteFastBoth(b, p, &vip, vport, &client, cport)
}

// fullnatICMPError rewrites an ICMP error about FullNAT connection c (see Worker.icmpError): one
// from the client side (dir original, quoting VIP → client) goes to the real server as if about
// the packet real server → local address; one from the real server's side (quoting local address
// → real server) goes to the client as if about VIP → client. The outer source of an error the
// real server itself sent becomes the VIP, a router's stays; the outer source of a client-side
// error becomes the local address, which the real server answers.
func (w *Worker) fullnatICMPError(b []byte, p, q *frame.Parsed, c *conntrack.Conn, dir conntrack.Dir, r *Real) {
	la, lport, _ := w.ct.Local(c)
	ra, rport := w.ct.Real(c)
	if dir == conntrack.DirOriginal {
		frame.RewriteSrc(b, p, la, 0)
		frame.RewriteDst(b, p, ra, 0)
		frame.RewriteInnerSrc(b, p, q, ra, rport)
		frame.RewriteInnerDst(b, p, q, la, lport)
		return
	}
	client, cport := c.Client()
	vip, vport := c.VIP()
	if p.Src == r.addr {
		frame.RewriteSrc(b, p, vip, 0)
	}
	frame.RewriteDst(b, p, client, 0)
	frame.RewriteInnerSrc(b, p, q, client, cport)
	frame.RewriteInnerDst(b, p, q, vip, vport)
}
