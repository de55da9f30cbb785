//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
// too few frames; 100 and 200 us gathered no more and lost more of what was offered;
// bench/README.md).
const DefaultIRQDefer = 50 * time.Microsecond

// "auto" switches deferral on when the workers take more than irqDeferOnPPS frames a second over
// two checks in a row, and off below irqDeferOffPPS over five. One HTTP connection at full speed
// in the lab (some 9k requests a second, about 90k frames a second over both links) stays below:
// with 100k it crossed now and then, and its p99 paid for the timer.
const (
	irqDeferEvery  = 100 * time.Millisecond
	irqDeferOnPPS  = 150_000
	irqDeferOffPPS = 75_000
	irqDeferOnFor  = 2
	irqDeferOffFor = 5
)

// irqDefer sets and restores the interfaces' NAPI deferral.
type irqDefer struct {
	ifaces  []string
	orig    [][2]string // per interface: napi_defer_hard_irqs, gro_flush_timeout as found
	timeout time.Duration

	mu sync.Mutex // guards on (the auto routine writes, govs stats reads)
	on bool
}

var irqDeferFiles = [2]string{"napi_defer_hard_irqs", "gro_flush_timeout"}

// deferValues is what irqDefer writes for timeout.
func deferValues(timeout time.Duration) [2]string {
	return [2]string{strconv.Itoa(irqDeferCount), strconv.FormatInt(timeout.Nanoseconds(), 10)}
}

// newIRQDefer reads the interfaces' values. Values that are exactly what govs writes are taken
// for an earlier govs's that did not stop cleanly (SIGKILL): warn says so, and 0 (the kernel's
// default) is what gets put back.
func newIRQDefer(ifaces []string, timeout time.Duration, warn func(string, ...any)) (*irqDefer, error) {
	d := &irqDefer{ifaces: ifaces, timeout: timeout}
	for _, name := range ifaces {
		var v [2]string
		for i, f := range irqDeferFiles {
			b, err := os.ReadFile(filepath.Join("/sys/class/net", name, f))
			if err != nil {
				return nil, errorf("xdp_irq_defer: %v (the kernel needs napi_defer_hard_irqs, Linux 5.10 and later, and a writable /sys; or set xdp_irq_defer = \"off\")", err)
			}
			v[i] = strings.TrimSpace(string(b))
		}
		if v == deferValues(timeout) || v == deferValues(DefaultIRQDefer) {
			warn("xdp_irq_defer: %s has napi_defer_hard_irqs %s and gro_flush_timeout %s, which govs sets: left by a govs that did not stop cleanly? govs puts 0 back when it stops", name, v[0], v[1])
			v = [2]string{"0", "0"}
		}
		d.orig = append(d.orig, v)
	}
	return d, nil
}

// set defers (on) or puts the values found back (off). When a write fails the state is
// unknown: it is reported off, and the caller tries to put the values back.
func (d *irqDefer) set(on bool) error {
	var errs []string
	for i, name := range d.ifaces {
		v := d.orig[i]
		if on {
			v = deferValues(d.timeout)
		}
		for j, f := range irqDeferFiles {
			if err := os.WriteFile(filepath.Join("/sys/class/net", name, f), []byte(v[j]), 0); err != nil {
				errs = append(errs, fmt.Sprintf("%s %s: %v", name, f, err))
			}
		}
	}
	d.mu.Lock()
	d.on = on && len(errs) == 0
	d.mu.Unlock()
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func (d *irqDefer) deferring() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.on
}

// restore puts the values found at start back.
func (d *irqDefer) restore() error {
	if err := d.set(false); err != nil {
		return errorf("xdp_irq_defer: put the interfaces' NAPI settings back: %v", err)
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
	x := e.os.xdp
	e.mu.Unlock()
	return x != nil && x.irq != nil && x.irq.deferring()
}

// startIRQDefer applies [dataplane] xdp_irq_defer: nothing for "off", deferral now for a
// duration. For "auto" it reads the interfaces' values and reports true: the caller starts
// routineIRQDefer once the workers run.
func (e *Engine) startIRQDefer() (auto bool, err error) {
	mode := e.cfg.IRQDefer
	if mode == "" || mode == "off" {
		return false, nil
	}
	timeout := DefaultIRQDefer
	if mode != "auto" {
		d, err := time.ParseDuration(mode)
		if err != nil || d <= 0 {
			return false, errorf("xdp_irq_defer %q: want \"off\", \"auto\" or a duration", mode)
		}
		timeout = d
	}
	names := make([]string, len(e.ifaces))
	for i, ifc := range e.ifaces {
		names[i] = ifc.Name
	}
	d, err := newIRQDefer(names, timeout, e.cfg.warnf)
	if err != nil {
		return false, err
	}
	e.os.xdp.irq = d
	if mode == "auto" {
		return true, nil
	}
	if err := d.set(true); err != nil {
		return false, errorf("xdp_irq_defer: %v (or set xdp_irq_defer = \"off\")", err)
	}
	e.cfg.logf("xdp_irq_defer: NAPI runs on %v deferred by %v", names, timeout)
	return false, nil
}

// routineIRQDefer is xdp_irq_defer = "auto": it measures the workers' receive rate and defers
// the interfaces' NAPI runs while it is high. Close waits for it before closeXDP puts the
// interfaces' values back.
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
		if err := d.set(on); err != nil {
			e.cfg.warnf("xdp_irq_defer: %v", err)
			if on {
				_ = d.set(false)
				p.on = false
			}
		} else if on {
			e.cfg.logf("xdp_irq_defer auto: NAPI runs deferred by %v at %.0f frames/s", d.timeout, pps)
		} else {
			e.cfg.logf("xdp_irq_defer auto: NAPI runs no longer deferred at %.0f frames/s", pps)
		}
	}
}
