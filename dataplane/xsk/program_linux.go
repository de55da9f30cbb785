package xsk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// Program is the XDP program on one interface with its XSKMAP: IPv4 frames arriving on queue q
// go to the socket registered for q; other frames, and frames of a queue without a socket, go
// on to the kernel's stack (XDP_PASS).
type Program struct {
	xsks *ebpf.Map
	prog *ebpf.Program
	link link.Link
}

// xdpPass is the XDP_PASS verdict.
const xdpPass = 2

// struct xdp_md's fields the program reads.
const (
	xdpMdData         = 0
	xdpMdDataEnd      = 4
	xdpMdRxQueueIndex = 16
)

// Attach loads the program with an XSKMAP of queues entries and attaches it to ifname (in the
// calling thread's network namespace) in mode, replacing nothing: an interface that already
// has an XDP program is an error.
func Attach(ifname string, mode Mode, queues int) (*Program, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("xsk: %w", err)
	}
	p := &Program{}
	if err := p.attach(ifc.Index, mode, queues); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("xsk: XDP program on %s (%s mode): %w", ifname, mode, err)
	}
	return p, nil
}

func (p *Program) attach(ifindex int, mode Mode, queues int) error {
	var err error
	p.xsks, err = ebpf.NewMap(&ebpf.MapSpec{Name: "govs_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(max(queues, 1))})
	if err != nil {
		return fmt.Errorf("create XSKMAP: %w", err)
	}
	ipv4 := int64(binary.NativeEndian.Uint16([]byte{0x08, 0x00})) // ETH_P_IP as the frame holds it
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, xdpMdData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, xdpMdDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R4, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R4, int32(ipv4), "pass"),
		asm.LoadMem(asm.R2, asm.R6, xdpMdRxQueueIndex, asm.Word),
		asm.LoadMapPtr(asm.R1, p.xsks.FD()),
		asm.Mov.Imm(asm.R3, xdpPass), // the verdict when the queue has no socket
		asm.FnRedirectMap.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	}
	p.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "govs_xsk", Type: ebpf.XDP, License: "Dual MIT/GPL", Instructions: insns})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	flags := link.XDPDriverMode
	if mode == ModeGeneric {
		flags = link.XDPGenericMode
	}
	p.link, err = link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: flags})
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return nil
}

// Register sends the frames of queue to s.
func (p *Program) Register(queue int, s *Socket) error {
	if err := p.xsks.Put(uint32(queue), uint32(s.fd)); err != nil {
		return fmt.Errorf("xsk: register queue %d in the XSKMAP: %w", queue, err)
	}
	return nil
}

// Close detaches the program and frees it and its map.
func (p *Program) Close() error {
	var errs []error
	if p.link != nil {
		errs = append(errs, p.link.Close())
	}
	if p.prog != nil {
		errs = append(errs, p.prog.Close())
	}
	if p.xsks != nil {
		errs = append(errs, p.xsks.Close())
	}
	return errors.Join(errs...)
}
