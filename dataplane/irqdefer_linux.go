//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// IRQ deferral ([dataplane] xdp_irq_defer, io = "afxdp")
//
// The XDP program runs in the interface's NAPI. Whenever a frame finds the NAPI idle, the NAPI is
// scheduled anew: a hardware interrupt and softirq on a NIC without coalescing, a wake-up of the
// NAPI thread (or a softirq on the sending CPU) on veth. When frames come faster than one at a
// time but slower than the NAPI takes them, each run takes a handful: in the lab the NAPI thread
// and the worker took turns on the balancer core every 8 frames, and the switches were half the
// core. napi_defer_hard_irqs and gro_flush_timeout (the kernel's "IRQ mitigation",
// Documentation/networking/napi.rst) make a NAPI run that found frames leave the interrupt masked
// and poll again when the timeout expires: frames gather and are taken in larger batches, at the
// price of up to the timeout of latency. "auto" defers only while the workers take frames
// faster than irqDeferOnPPS, so that a single connection's round trips do not wait for the
// timer; a duration defers always. govs puts the interfaces' own values back when it stops.

// irqDeferCount is napi_defer_hard_irqs while deferring: how many empty polls a NAPI makes, a
// timeout apart, before it unmasks the interrupt again.
const irqDeferCount = 2

// DefaultIRQDefer is the timeout of xdp_irq_defer = "auto" (measured in the lab: 25 us gathered
// too few frames, 200 us overflowed rings; bench/README.md).
const DefaultIRQDefer = 50 * time.Microsecond

// "auto" switches deferral on when the workers take more than irqDeferOnPPS frames a second over
// two checks in a row, and off below irqDeferOffPPS over five: one HTTP connection's round trips
// (some 20k frames a second in the lab) stay well below.
const (
	irqDeferEvery  = 100 * time.Millisecond
	irqDeferOnPPS  = 100_000
	irqDeferOffPPS = 50_000
	irqDeferOnFor  = 2
	irqDeferOffFor = 5
)

// irqDefer sets and restores the interfaces' NAPI deferral.
type irqDefer struct {
	ifaces  []string
	orig    [][2]string // per interface: napi_defer_hard_irqs, gro_flush_timeout as found
	timeout time.Duration
	on      bool
}

var irqDeferFiles = [2]string{"napi_defer_hard_irqs", "gro_flush_timeout"}

func newIRQDefer(ifaces []string, timeout time.Duration) (*irqDefer, error) {
	d := &irqDefer{ifaces: ifaces, timeout: timeout}
	for _, name := range ifaces {
		var v [2]string
		for i, f := range irqDeferFiles {
			b, err := os.ReadFile(filepath.Join("/sys/class/net", name, f))
			if err != nil {
				return nil, errorf("xdp_irq_defer: %w (the kernel needs napi_defer_hard_irqs, Linux 5.10 and later; set xdp_irq_defer = \"off\")", err)
			}
			v[i] = strings.TrimSpace(string(b))
		}
		d.orig = append(d.orig, v)
	}
	return d, nil
}

// set defers (on) or puts the values found back (off).
func (d *irqDefer) set(on bool) error {
	var errs []error
	for i, name := range d.ifaces {
		v := d.orig[i]
		if on {
			v = [2]string{strconv.Itoa(irqDeferCount), strconv.FormatInt(d.timeout.Nanoseconds(), 10)}
		}
		for j, f := range irqDeferFiles {
			if err := os.WriteFile(filepath.Join("/sys/class/net", name, f), []byte(v[j]), 0); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", name, f, err))
			}
		}
	}
	d.on = on
	return errors.Join(errs...)
}

// restore puts the values found at start back, if deferral is on.
func (d *irqDefer) restore() error {
	if !d.on {
		return nil
	}
	if err := d.set(false); err != nil {
		return errorf("xdp_irq_defer: put the interfaces' NAPI settings back: %w", err)
	}
	return nil
}

// irqDeferPolicy is auto's hysteresis: on after irqDeferOnFor checks above irqDeferOnPPS, off
// after irqDeferOffFor below irqDeferOffPPS.
type irqDeferPolicy struct {
	on     bool
	streak int
}

// next takes one check's rate and reports whether deferral should change, and to what.
func (p *irqDeferPolicy) next(pps float64) (change, on bool) {
	switch {
	case !p.on && pps > irqDeferOnPPS, p.on && pps < irqDeferOffPPS:
		p.streak++
	default:
		p.streak = 0
	}
	need := irqDeferOnFor
	if p.on {
		need = irqDeferOffFor
	}
	if p.streak < need {
		return false, p.on
	}
	p.on, p.streak = !p.on, 0
	return true, p.on
}

// IRQDeferring reports whether the interfaces' NAPI runs are deferred now ([dataplane]
// xdp_irq_defer).
func (e *Engine) IRQDeferring() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.os.xdp != nil && e.os.xdp.irq != nil && e.os.xdp.irq.on
}

// startIRQDefer applies [dataplane] xdp_irq_defer: nothing for "off", deferral now for a
// duration, the auto routine for "auto".
func (e *Engine) startIRQDefer() error {
	mode := e.cfg.IRQDefer
	if mode == "" || mode == "off" {
		return nil
	}
	timeout := DefaultIRQDefer
	if mode != "auto" {
		d, err := time.ParseDuration(mode)
		if err != nil || d <= 0 {
			return errorf("xdp_irq_defer %q: want \"off\", \"auto\" or a duration", mode)
		}
		timeout = d
	}
	names := make([]string, len(e.ifaces))
	for i, ifc := range e.ifaces {
		names[i] = ifc.Name
	}
	d, err := newIRQDefer(names, timeout)
	if err != nil {
		return err
	}
	e.os.xdp.irq = d
	if mode != "auto" {
		if err := d.set(true); err != nil {
			return errorf("xdp_irq_defer: %w", err)
		}
		e.cfg.logf("xdp_irq_defer: NAPI runs on %v deferred by %v", names, timeout)
		return nil
	}
	e.os.wg.Add(1)
	go e.routineIRQDefer(d)
	return nil
}

// routineIRQDefer is xdp_irq_defer = "auto": it measures the workers' receive rate and defers
// the interfaces' NAPI runs while it is high.
func (e *Engine) routineIRQDefer(d *irqDefer) {
	defer e.os.wg.Done()
	tick := time.NewTicker(irqDeferEvery)
	defer tick.Stop()
	var p irqDeferPolicy
	last, lastAt := e.rxPackets(), time.Now()
	for {
		select {
		case <-e.os.stopping:
			return
		case <-tick.C:
		}
		n, now := e.rxPackets(), time.Now()
		pps := float64(n-last) / now.Sub(lastAt).Seconds()
		last, lastAt = n, now
		change, on := p.next(pps)
		if !change {
			continue
		}
		e.mu.Lock()
		if !e.os.closed {
			if err := d.set(on); err != nil {
				e.cfg.warnf("xdp_irq_defer: %v", err)
			} else if on {
				e.cfg.logf("xdp_irq_defer auto: NAPI runs deferred by %v at %.0f frames/s", d.timeout, pps)
			} else {
				e.cfg.logf("xdp_irq_defer auto: NAPI runs no longer deferred at %.0f frames/s", pps)
			}
		}
		e.mu.Unlock()
	}
}
