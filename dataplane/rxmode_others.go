//go:build !linux

package dataplane

func (e *Engine) rxModeStats() (latency bool, switches uint64) { return false, 0 }
