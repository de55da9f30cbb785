package xsk

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cloudflare/cbpfc"
	"golang.org/x/net/bpf"
)

// Program is the XDP program on one interface with its XSKMAP: the frames its filter accepts,
// arriving on queue q, go to the socket registered for q; other frames, and frames of a queue
// without a socket, go on to the kernel's stack (XDP_PASS).
//
// With a steering program as well (SetFilterSteer), the program also tells the reader which of
// several readers a frame belongs to: it runs the steering program, a classic BPF program over
// the frame that returns a member number, and puts a word, SteerMark | member, in front of the
// frame, which the socket's reader takes off with RxBatchSteer. A socket belongs to the queue the
// frame arrived on, and the NIC chooses the queue (RSS) by a hash that does not keep a NAT
// connection's two directions together: the reader hands a frame steered elsewhere to its member.
type Program struct {
	xsks   *ebpf.Map
	prog   *ebpf.Program
	link   link.Link
	mode   Mode
	filter []bpf.Instruction
	steer  []bpf.Instruction
}

// steerWord is the size of the word a steering program puts in front of a frame.
const steerWord = 4

// XDP verdicts.
const (
	xdpPass     = 2
	xdpRedirect = 4
)

// struct xdp_md's fields the program reads.
const (
	xdpMdData         = 0
	xdpMdDataEnd      = 4
	xdpMdRxQueueIndex = 16
)

// ipv4Only is the filter Attach uses: every IPv4 frame, untagged.
var ipv4Only = []bpf.Instruction{
	bpf.LoadAbsolute{Off: 12, Size: 2},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipFalse: 1},
	bpf.RetConstant{Val: 0xFFFF},
	bpf.RetConstant{Val: 0},
}

// Attach loads a program that redirects every untagged IPv4 frame, with an XSKMAP of queues
// entries, and attaches it to ifname (in the calling thread's network namespace) in mode,
// replacing nothing: an interface that already has an XDP program is an error.
func Attach(ifname string, mode Mode, queues int) (*Program, error) {
	return AttachFilter(ifname, mode, queues, ipv4Only)
}

// AttachFilter is Attach with the frames to redirect chosen by filter, a classic BPF socket
// filter that sees the frame from its Ethernet header, as a SOCK_RAW packet socket's does: a
// non-zero verdict redirects the frame, zero passes it to the kernel. The filter is compiled to
// eBPF (package cbpfc) and runs in the XDP program, before the kernel builds an skb. A nil
// filter passes every frame.
func AttachFilter(ifname string, mode Mode, queues int, filter []bpf.Instruction) (*Program, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("xsk: %w", err)
	}
	p := &Program{mode: mode, filter: filter}
	if err := p.attach(ifc.Index, queues); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("xsk: XDP program on %s (%s mode): %w", ifname, mode, err)
	}
	return p, nil
}

func (p *Program) attach(ifindex int, queues int) error {
	var err error
	p.xsks, err = ebpf.NewMap(&ebpf.MapSpec{Name: "govs_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(max(queues, 1))})
	if err != nil {
		return fmt.Errorf("create XSKMAP: %w", err)
	}
	if p.prog, err = p.load(p.filter, p.steer); err != nil {
		return err
	}
	flags := link.XDPDriverMode
	if p.mode == ModeGeneric {
		flags = link.XDPGenericMode
	}
	p.link, err = link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: flags})
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return nil
}

// Registers of the program: the context and the packet bounds live in callee-saved registers,
// so the filter's code (R0-R5) and the helper call leave them alone.
const (
	regCtx    = asm.R6
	regStart  = asm.R7
	regEnd    = asm.R8
	regMember = asm.R9
)

// compile compiles a classic BPF program into eBPF that leaves its result in R0 and jumps to
// result.
func compile(prog []bpf.Instruction, prefix, result string) (asm.Instructions, error) {
	return cbpfc.ToEBPF(prog, cbpfc.EBPFOpts{
		PacketStart: regStart,
		PacketEnd:   regEnd,
		Result:      asm.R0,
		ResultLabel: result,
		Working:     [4]asm.Register{asm.R2, asm.R3, asm.R4, asm.R5},
		LabelPrefix: prefix,
	})
}

// instructions returns the XDP program for filter and steer (see Program and SetFilterSteer)
// that redirects what filter accepts to the XSKMAP whose descriptor is xsks.
func instructions(filter, steer []bpf.Instruction, xsks int) (asm.Instructions, error) {
	if filter == nil {
		return asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()}, nil
	}
	body, err := compile(filter, "filter", "verdict")
	if err != nil {
		return nil, fmt.Errorf("compile the filter: %w", err)
	}
	insns := asm.Instructions{
		asm.Mov.Reg(regCtx, asm.R1),
		asm.LoadMem(regStart, regCtx, xdpMdData, asm.Word),
		asm.LoadMem(regEnd, regCtx, xdpMdDataEnd, asm.Word),
	}
	insns = append(insns, body...)
	insns = append(insns, asm.JEq.Imm(asm.R0, 0, "pass").WithSymbol("verdict"))
	if steer == nil {
		return append(insns,
			asm.LoadMem(asm.R2, regCtx, xdpMdRxQueueIndex, asm.Word),
			asm.LoadMapPtr(asm.R1, xsks),
			asm.Mov.Imm(asm.R3, xdpPass), // the verdict when the queue has no socket
			asm.FnRedirectMap.Call(),
			asm.Return(),
			asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
			asm.Return(),
		), nil
	}
	body, err = compile(steer, "steer", "member")
	if err != nil {
		return nil, fmt.Errorf("compile the steering program: %w", err)
	}
	insns = append(insns, body...)
	return append(insns,
		asm.Mov.Reg(regMember, asm.R0).WithSymbol("member"),
		asm.And.Imm(regMember, 0xffff),
		asm.Or.Imm(regMember, SteerMark),
		// The redirect first: a frame of a queue without a socket goes on to the kernel as it
		// came. bpf_redirect_map only records the target; the frame leaves as it is when the
		// program returns, so the word can still go in front of it.
		asm.LoadMem(asm.R2, regCtx, xdpMdRxQueueIndex, asm.Word),
		asm.LoadMapPtr(asm.R1, xsks),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.JNE.Imm(asm.R0, xdpRedirect, "pass"),
		// bpf_xdp_adjust_head(ctx, -4): the word goes in front of the frame (this kernel
		// refuses bpf_xdp_adjust_meta to XDP programs: measured on 6.18). Every driver with
		// XDP keeps the headroom for it; without, the frame goes on to the kernel unchanged.
		asm.Mov.Reg(asm.R1, regCtx),
		asm.Mov.Imm(asm.R2, -steerWord),
		asm.FnXdpAdjustHead.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R2, regCtx, xdpMdData, asm.Word),
		asm.LoadMem(asm.R3, regCtx, xdpMdDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, steerWord),
		asm.JGT.Reg(asm.R4, asm.R3, "unshift"), // for the verifier: the word is in the frame
		asm.StoreMem(asm.R2, 0, regMember, asm.Word),
		asm.Mov.Imm(asm.R0, xdpRedirect),
		asm.Return(),
		// Not reached (the frame had at least an Ethernet header): give the kernel the frame
		// as it came.
		asm.Mov.Reg(asm.R1, regCtx).WithSymbol("unshift"),
		asm.Mov.Imm(asm.R2, steerWord),
		asm.FnXdpAdjustHead.Call(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	), nil
}

// load compiles filter and steer into an XDP program that redirects what filter accepts to the
// XSKMAP.
func (p *Program) load(filter, steer []bpf.Instruction) (*ebpf.Program, error) {
	insns, err := instructions(filter, steer, p.xsks.FD())
	if err != nil {
		return nil, err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "govs_xsk", Type: ebpf.XDP, License: "Dual MIT/GPL", Instructions: insns})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return prog, nil
}

// SetFilter replaces the program's filter atomically (the link's program is swapped in one
// step: no frame sees neither). A nil filter passes every frame to the kernel.
func (p *Program) SetFilter(filter []bpf.Instruction) error {
	return p.SetFilterSteer(filter, p.steer)
}

// SetFilterSteer replaces the program's filter and steering program together, atomically as
// SetFilter does. steer is a classic BPF program that sees the frame from its Ethernet header and
// returns the member (0 to 65535) whose reader the frame belongs to; nil marks no frame.
func (p *Program) SetFilterSteer(filter, steer []bpf.Instruction) error {
	prog, err := p.load(filter, steer)
	if err != nil {
		return fmt.Errorf("xsk: %w", err)
	}
	if err := p.link.Update(prog); err != nil {
		prog.Close()
		return fmt.Errorf("xsk: replace the XDP program: %w", err)
	}
	p.prog.Close()
	p.prog, p.filter, p.steer = prog, filter, steer
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
