//go:build !linux

package afpacket

import (
	"fmt"
	"runtime"

	"golang.org/x/net/bpf"
)

var errUnsupported = fmt.Errorf("afpacket: AF_PACKET rings are unsupported on %s; run govs on Linux", runtime.GOOS)

// Socket is an AF_PACKET socket; on this platform it cannot be opened.
type Socket struct{}

// Open returns an error: AF_PACKET exists only on Linux.
func Open(cfg Config) (*Socket, error) { return nil, errUnsupported }

func (s *Socket) Fd() int                                       { return -1 }
func (s *Socket) NextBatch(fs []Frame) int                      { return 0 }
func (s *Socket) RxIdle() bool                                  { return true }
func (s *Socket) TxFrame() []byte                               { return nil }
func (s *Socket) TxCommit(n int, vnet VnetHdr)                  {}
func (s *Socket) TxSend(frame []byte, vnet VnetHdr) bool        { return false }
func (s *Socket) Flush() (int, error)                           { return 0, errUnsupported }
func (s *Socket) SetFilter(prog []bpf.RawInstruction) error     { return errUnsupported }
func (s *Socket) SetFanoutProg(prog []bpf.RawInstruction) error { return errUnsupported }
func (s *Socket) Stats() (Stats, error)                         { return Stats{}, errUnsupported }
func (s *Socket) Close() error                                  { return nil }

// DisableReceiveOffloads returns an error: the ethtool ioctl exists only on Linux.
func DisableReceiveOffloads(ifname string) (changed []string, err error) {
	return nil, errUnsupported
}
