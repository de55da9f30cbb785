package bpfgen

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// MaxInstructions is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MaxInstructions = 4096

// label names a position in a program under construction.
type label int

// next, as a jump target, means the following instruction.
const next label = -1

type itemKind uint8

const (
	kindInsn itemKind = iota
	kindLabel
	kindJump
	kindCond
)

type item struct {
	kind itemKind
	insn bpf.Instruction
	lbl  label // kindLabel: the label; kindJump: the target
	cond bpf.JumpTest
	val  uint32
	useX bool // compare A with X instead of val
	t, f label
	wide bool // a conditional jump too far for 8-bit skips: jcc 0,1; ja t; ja f
}

// asm is a tiny label-resolving assembler. Classic BPF conditional jumps skip at most 255
// instructions, so a conditional jump whose target is further away is widened into a conditional
// jump over two unconditional ones (which have 32-bit skips).
type asm struct {
	items   []item
	nlabels int
}

func (a *asm) newLabel() label { a.nlabels++; return label(a.nlabels - 1) }

func (a *asm) mark(l label) { a.items = append(a.items, item{kind: kindLabel, lbl: l}) }

func (a *asm) i(insns ...bpf.Instruction) {
	for _, in := range insns {
		a.items = append(a.items, item{kind: kindInsn, insn: in})
	}
}

func (a *asm) ja(l label) { a.items = append(a.items, item{kind: kindJump, lbl: l}) }

// jif jumps to t if "A cond val", else to f (either may be next).
func (a *asm) jif(cond bpf.JumpTest, val uint32, t, f label) {
	a.items = append(a.items, item{kind: kindCond, cond: cond, val: val, t: t, f: f})
}

// jifx jumps to t if "A cond X", else to f.
func (a *asm) jifx(cond bpf.JumpTest, t, f label) {
	a.items = append(a.items, item{kind: kindCond, cond: cond, useX: true, t: t, f: f})
}

func (it *item) size() int {
	switch it.kind {
	case kindLabel:
		return 0
	case kindCond:
		if it.wide {
			return 3
		}
	}
	return 1
}

// assemble resolves labels and returns the program, or an error if it exceeds MaxInstructions.
func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	pos := make([]int, len(a.items)) // position of each item
	at := make([]int, a.nlabels)     // position of each label
	for i := range at {
		at[i] = -1
	}
	target := func(i int, l label) int {
		if l == next {
			return pos[i] + a.items[i].size()
		}
		return at[l]
	}
	for {
		p := 0
		for i := range a.items {
			pos[i] = p
			if a.items[i].kind == kindLabel {
				at[a.items[i].lbl] = p
			}
			p += a.items[i].size()
		}
		if p > MaxInstructions {
			return nil, fmt.Errorf("failed to generate BPF: program needs %d instructions, more than the kernel's %d: serve fewer addresses or ports on this interface", p, MaxInstructions)
		}
		widened := false
		for i := range a.items {
			it := &a.items[i]
			if it.kind != kindCond || it.wide {
				continue
			}
			for _, l := range []label{it.t, it.f} {
				if l != next && at[l] < 0 {
					panic(fmt.Sprintf("bpfgen: label %d used but not marked", l))
				}
				if d := target(i, l) - pos[i] - 1; d > 255 || d < 0 {
					it.wide, widened = true, true
				}
			}
		}
		if !widened {
			break
		}
	}
	prog := make([]bpf.Instruction, 0, len(a.items))
	for i := range a.items {
		it := &a.items[i]
		p := pos[i]
		switch it.kind {
		case kindInsn:
			prog = append(prog, it.insn)
		case kindJump:
			if at[it.lbl] <= p {
				panic("bpfgen: backward jump") // classic BPF only jumps forward
			}
			prog = append(prog, bpf.Jump{Skip: uint32(at[it.lbl] - p - 1)})
		case kindCond:
			t, f := target(i, it.t), target(i, it.f)
			if it.wide {
				prog = append(prog, cond(it, 0, 1), bpf.Jump{Skip: uint32(t - p - 2)}, bpf.Jump{Skip: uint32(f - p - 3)})
			} else {
				prog = append(prog, cond(it, uint8(t-p-1), uint8(f-p-1)))
			}
		}
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("failed to assemble BPF: %w", err)
	}
	return raw, nil
}

func cond(it *item, st, sf uint8) bpf.Instruction {
	if it.useX {
		return bpf.JumpIfX{Cond: it.cond, SkipTrue: st, SkipFalse: sf}
	}
	return bpf.JumpIf{Cond: it.cond, Val: it.val, SkipTrue: st, SkipFalse: sf}
}
