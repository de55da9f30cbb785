//go:build linux

package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// ifaceLocks are the interfaces a govs serves, claimed so that no second govs serves them too.
//
// Why: two govs on one interface both forward every frame (duplicate traffic) and share the
// kernel guard's nftables table, which each deletes at its start and stop. The control socket
// does not stop a second govs configured with another socket path.
//
// Each interface is claimed by binding the abstract unix socket "@govs/dataplane/<ifname>":
// abstract sockets belong to the network namespace, as interfaces do, and vanish with the last
// descriptor, so a govs that crashed or was killed never leaves a stale claim behind. The holder
// answers a connecting newcomer with who it is (its pid and control socket), so the newcomer's
// error names the govs to stop.
type ifaceLocks struct {
	lns []net.Listener
	wg  sync.WaitGroup
}

// lockHolder is what a holder tells a newcomer, one JSON line.
type lockHolder struct {
	PID           int    `json:"pid"`
	ControlSocket string `json:"control_socket"`
}

// namespaceLock names the claim on the whole network namespace rather than one interface: the
// kernel guard is the namespace's nftables table "netdev govs", which a govs clears at its start
// and deletes at its stop, so two govs in one namespace would undo each other's guard even on
// different interfaces.
const namespaceLock = ""

// lockName is the abstract socket claiming interface ifname, or the namespace (Go binds a name
// starting with '@' in the abstract namespace).
func lockName(ifname string) string {
	if ifname == namespaceLock {
		return "@govs/netns"
	}
	return "@govs/dataplane/" + ifname
}

// lockInterfaces claims every interface in names for this govs, whose control socket is ctl, or
// claims none and says which govs holds the first one already served.
func lockInterfaces(names []string, ctl string) (*ifaceLocks, error) {
	l := &ifaceLocks{}
	me := lockHolder{PID: os.Getpid(), ControlSocket: ctl}
	for _, name := range names {
		ln, err := claim(name)
		if err != nil {
			l.close()
			return nil, err
		}
		l.lns = append(l.lns, ln)
		l.wg.Add(1)
		go l.answer(ln, me)
	}
	return l, nil
}

// claim binds name's lock, or says who holds it. A holder that exits between the failed bind
// and the question releases the lock, hence the second try.
func claim(name string) (net.Listener, error) {
	for try := 0; ; try++ {
		ln, err := net.Listen("unix", lockName(name))
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("failed to claim interface %s for this govs (abstract unix socket %s): %w", name, lockName(name), err)
		}
		h, herr := askHolder(name)
		if herr != nil && errors.Is(herr, syscall.ECONNREFUSED) && try == 0 {
			continue
		}
		who := "another govs"
		if herr == nil {
			who = fmt.Sprintf("another govs (pid %d, control socket %s)", h.PID, h.ControlSocket)
		}
		if name == namespaceLock {
			return nil, fmt.Errorf("%s already runs in this network namespace; stop it first: one govs per network namespace, whose kernel guard (the nftables table netdev govs) it owns", who)
		}
		return nil, fmt.Errorf("interface %s is already served by %s in this network namespace; stop it first", name, who)
	}
}

// askHolder asks the holder of name's lock who it is.
func askHolder(name string) (lockHolder, error) {
	var h lockHolder
	c, err := net.DialTimeout("unix", lockName(name), time.Second)
	if err != nil {
		return h, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(line, &h); err != nil || h.PID == 0 {
		return h, fmt.Errorf("unexpected answer from the holder of %s: %q", lockName(name), line)
	}
	return h, nil
}

// answer tells whoever connects to ln who holds it, until ln is closed.
func (l *ifaceLocks) answer(ln net.Listener, me lockHolder) {
	defer l.wg.Done()
	msg, _ := json.Marshal(me)
	msg = append(msg, '\n')
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(msg)
		c.Close()
	}
}

// close releases every claim.
func (l *ifaceLocks) close() {
	if l == nil {
		return
	}
	for _, ln := range l.lns {
		ln.Close()
	}
	l.wg.Wait()
	l.lns = nil
}
