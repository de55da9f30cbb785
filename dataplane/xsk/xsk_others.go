//go:build !linux

package xsk

import (
	"fmt"
	"runtime"

	"golang.org/x/net/bpf"
)

var errUnsupported = fmt.Errorf("xsk: AF_XDP is unsupported on %s; run govs on Linux", runtime.GOOS)

// Socket is an AF_XDP socket; on this platform it cannot be opened.
type Socket struct{}

// Open fails: AF_XDP exists only on Linux.
func Open(Config) (*Socket, error) { return nil, errUnsupported }

func (s *Socket) Fd() int                                  { return -1 }
func (s *Socket) RxBatch(fs [][]byte) int                  { return 0 }
func (s *Socket) RxBatchSteer(fs [][]byte, to []int32) int { return 0 }
func (s *Socket) Poke()                                    {}
func (s *Socket) RxRelease()                               {}
func (s *Socket) TxFrame() []byte                          { return nil }
func (s *Socket) TxCommit(n int)                           {}
func (s *Socket) Flush() (int, error)                      { return 0, errUnsupported }
func (s *Socket) Stats() (Stats, error)                    { return Stats{}, errUnsupported }
func (s *Socket) Close() error                             { return nil }

// Program is an XDP program with its XSKMAP; on this platform it cannot be attached.
type Program struct{}

// Attach fails: XDP exists only on Linux.
func Attach(string, Mode, int) (*Program, error) { return nil, errUnsupported }

func (p *Program) Register(queue int, s *Socket) error { return errUnsupported }
func (p *Program) Close() error                        { return nil }

// AttachFilter fails: XDP exists only on Linux.
func AttachFilter(string, Mode, int, []bpf.Instruction) (*Program, error) {
	return nil, errUnsupported
}

func (p *Program) SetFilter([]bpf.Instruction) error { return errUnsupported }

func (p *Program) SetFilterSteer(_, _ []bpf.Instruction) error { return errUnsupported }
