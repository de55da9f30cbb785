// Package dataplanetest provides an in-memory port, a dataplane.Receiver and dataplane.Transmitter,
// so tests and the offline benchmark harness run frames through the same worker code as the live
// data plane without a kernel.
package dataplanetest

import (
	"github.com/govs/govs/dataplane/afpacket"
)

// Port is an in-memory port. Frames queued with Inject (or set with Loop) are received in order;
// transmitted frames are handed to Sink (when set) at Flush and counted.
//
// A Port is used by one worker at a time; it is not safe for concurrent use. Once set up (and
// after the first NextBatch), NextBatch, TxFrame, TxSend, TxCommit and Flush do not allocate.
type Port struct {
	rx    [][]byte
	metas []afpacket.RxMeta
	pos   int
	loop  bool
	rxbuf [][]byte // the frames handed out by NextBatch: copies, since workers rewrite frames in place
	maxRx int      // the longest injected frame

	slots   [][]byte
	lens    []int
	vnets   []afpacket.VnetHdr
	queued  int
	handing bool // TxFrame returned the slot at queued and TxCommit has not been called yet

	// Sink, when set, sees every frame at Flush. frame is valid only during the call.
	Sink func(frame []byte, vnet afpacket.VnetHdr)
	// Refuse makes Flush send nothing (a device that refuses frames), to test full rings.
	Refuse bool
	// Sent counts frames handed to Sink (or dropped on the floor when Sink is nil).
	Sent uint64
}

// NewPort returns a port with txSlots transmit slots of slotSize bytes each.
func NewPort(slotSize, txSlots int) *Port {
	p := &Port{
		slots: make([][]byte, txSlots),
		lens:  make([]int, txSlots),
		vnets: make([]afpacket.VnetHdr, txSlots),
		maxRx: slotSize,
	}
	for i := range p.slots {
		p.slots[i] = make([]byte, slotSize)
	}
	return p
}

// Inject queues a frame (copied) to be received with meta. meta.Len 0 means len(frame).
func (p *Port) Inject(frame []byte, meta afpacket.RxMeta) {
	if meta.Len == 0 {
		meta.Len = uint32(len(frame))
	}
	p.rx = append(p.rx, append([]byte(nil), frame...))
	p.metas = append(p.metas, meta)
	if len(frame) > p.maxRx {
		p.maxRx = len(frame)
		p.rxbuf = nil
	}
}

// Loop makes NextBatch cycle over the injected frames forever (for benchmarks) instead of running dry.
func (p *Port) Loop(on bool) { p.loop = on }

// NextBatch implements dataplane.Receiver: it copies up to len(fs) injected frames, valid until
// the next call.
func (p *Port) NextBatch(fs []afpacket.Frame) int {
	for len(p.rxbuf) < len(fs) {
		p.rxbuf = append(p.rxbuf, make([]byte, p.maxRx))
	}
	n := 0
	for n < len(fs) {
		if p.pos >= len(p.rx) {
			if !p.loop || len(p.rx) == 0 {
				break
			}
			p.pos = 0
		}
		src := p.rx[p.pos]
		fs[n] = afpacket.Frame{Data: p.rxbuf[n][:len(src)], Meta: p.metas[p.pos]}
		copy(fs[n].Data, src)
		p.pos++
		n++
	}
	return n
}

// TxFrame implements dataplane.Transmitter.
func (p *Port) TxFrame() []byte {
	if p.queued >= len(p.slots) {
		return nil
	}
	p.handing = true
	return p.slots[p.queued]
}

// TxSend implements dataplane.Transmitter.
func (p *Port) TxSend(frame []byte, vnet afpacket.VnetHdr) bool {
	if p.queued >= len(p.slots) || len(frame) > len(p.slots[p.queued]) || len(frame) == 0 {
		return false
	}
	copy(p.slots[p.queued], frame)
	p.lens[p.queued] = len(frame)
	p.vnets[p.queued] = vnet
	p.queued++
	return true
}

// TxCommit implements dataplane.Transmitter.
func (p *Port) TxCommit(n int, vnet afpacket.VnetHdr) {
	if !p.handing {
		panic("dataplanetest: TxCommit without TxFrame")
	}
	p.handing = false
	p.lens[p.queued] = n
	p.vnets[p.queued] = vnet
	p.queued++
}

// Flush implements dataplane.Transmitter: it hands every queued frame to Sink.
func (p *Port) Flush() (int, error) {
	if p.Refuse {
		return 0, nil
	}
	n := p.queued
	for i := 0; i < n; i++ {
		if p.Sink != nil {
			p.Sink(p.slots[i][:p.lens[i]], p.vnets[i])
		}
	}
	p.Sent += uint64(n)
	p.queued = 0
	return n, nil
}

// Collector is a Sink that keeps copies of what was sent, for tests.
type Collector struct {
	Frames [][]byte
	Vnets  []afpacket.VnetHdr
}

// Sink appends a copy of frame.
func (c *Collector) Sink(frame []byte, vnet afpacket.VnetHdr) {
	c.Frames = append(c.Frames, append([]byte(nil), frame...))
	c.Vnets = append(c.Vnets, vnet)
}
