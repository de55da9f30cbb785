//go:build !linux

package dataplane

import (
	"runtime"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/bpfgen"
)

type engineOS struct{}

func (engineOS) program(*Engine, *Tables) error { return nil }

// New is only implemented on Linux: the data plane needs AF_PACKET rings.
func New(cfg Config, t *Tables) (*Engine, error) {
	return nil, errorf("the data plane needs Linux AF_PACKET; unsupported on %s", runtime.GOOS)
}

// Close does nothing where New cannot succeed.
func (e *Engine) Close() error { return nil }

// SocketStats has nothing to report where there are no sockets.
func (e *Engine) SocketStats() afpacket.Stats { return afpacket.Stats{} }

// RefreshKernelGuard has nothing to refresh where there is no data plane.
func (e *Engine) RefreshKernelGuard() error { return nil }

// SetStandby has no sockets to change where there is no data plane.
func (e *Engine) SetStandby(on bool) error { return nil }

// Standby reports false where there is no data plane.
func (e *Engine) Standby() bool { return false }

// fanoutRules has no fanout program to report where there is no data plane.
func (e *Engine) fanoutRules() map[serviceKey]bpfgen.HashRule { return nil }

// XDPWorkers is 1 where there is no AF_XDP.
func XDPWorkers([]string) int { return 1 }

// InterfaceProblems is nil where there is no AF_XDP.
func (e *Engine) InterfaceProblems() []string { return nil }

// IRQDeferring is false where there is no AF_XDP.
func (e *Engine) IRQDeferring() bool { return false }
