package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NS is one named network namespace of a Topology.
//
// All methods are safe for concurrent use. Sockets returned by Listen, ListenPacket and Dial live in
// the namespace and can be used from any goroutine.
type NS struct {
	Name string

	mu     sync.Mutex // guards fd
	fd     int        // open /run/netns/Name, -1 once closed
	closed bool
}

var errNSClosed = errors.New("network namespace already torn down")

// newNS creates the namespace with `ip netns add` and keeps an fd to it.
func newNS(name string) (*NS, error) {
	if err := ipCmd("netns", "add", name); err != nil {
		return nil, err
	}
	fd, err := openNetns(name)
	if err != nil {
		_ = ipCmd("netns", "del", name)
		return nil, err
	}
	return &NS{Name: name, fd: fd}, nil
}

// close releases the fd and deletes the namespace name. Sockets still open inside keep the kernel
// namespace alive until they are closed, but it is no longer reachable by name.
func (n *NS) close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	var errs []error
	if n.fd >= 0 {
		errs = append(errs, closeNetns(n.fd))
		n.fd = -1
	}
	errs = append(errs, ipCmd("netns", "del", n.Name))
	return errors.Join(errs...)
}

// Do runs fn on an OS thread inside the namespace and returns its error. Every call gets a fresh
// thread, which is discarded afterwards, so fn may block.
func (n *NS) Do(fn func() error) error {
	n.mu.Lock()
	fd, closed := n.fd, n.closed
	n.mu.Unlock()
	if closed {
		return fmt.Errorf("failed to run in %s: %w", n.Name, errNSClosed)
	}
	return doInNetns(fd, fn)
}

// listenConfig avoids MPTCP so the sockets behave like the plain TCP the balancer has to handle.
func listenConfig() *net.ListenConfig {
	lc := &net.ListenConfig{}
	lc.SetMultipathTCP(false)
	return lc
}

// Listen opens a stream listener inside the namespace (see net.Listen).
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = listenConfig().Listen(context.Background(), network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s %s in %s: %w", network, addr, n.Name, err)
	}
	return l, nil
}

// ListenPacket opens a packet listener inside the namespace (see net.ListenPacket).
func (n *NS) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() error {
		var err error
		c, err = listenConfig().ListenPacket(context.Background(), network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s %s in %s: %w", network, addr, n.Name, err)
	}
	return c, nil
}

// Dial connects from inside the namespace (see net.Dialer.DialContext). addr must be an IP literal
// with port: name resolution would read the host's configuration.
func (n *NS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("failed to dial %s %s from %s: %w", network, addr, n.Name, err)
	}
	return c, nil
}

// HTTPClient returns a client whose connections are made inside the namespace. With keepAlive
// false every request uses a new TCP connection; with keepAlive true the client holds at most one
// connection per host, so sequential requests share one connection.
func (n *NS) HTTPClient(keepAlive bool) *http.Client {
	tr := &http.Transport{
		DialContext:         n.Dial,
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		ForceAttemptHTTP2:   false,
	}
	if keepAlive {
		tr.MaxConnsPerHost = 1
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// Command returns `ip netns exec NAME name args...`; the command also sees the namespace's own
// /sys, which in-process code does not.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// HardwareAddr returns the MAC address of interface ifname inside the namespace.
func (n *NS) HardwareAddr(ifname string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to look up %s in %s: %w", ifname, n.Name, err)
	}
	return mac, nil
}

// Interface returns interface ifname as seen inside the namespace.
func (n *NS) Interface(ifname string) (*net.Interface, error) {
	var ifi *net.Interface
	err := n.Do(func() error {
		var err error
		ifi, err = net.InterfaceByName(ifname)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("failed to look up %s in %s: %w", ifname, n.Name, err)
	}
	return ifi, nil
}

// sysctlPath maps "net.ipv4.ip_forward" to /proc/sys/net/ipv4/ip_forward. Interface names may not
// contain dots here, which holds for every name lab creates.
func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// SetSysctl writes net.* sysctls inside the namespace, in order. /proc/sys/net resolves against
// the writing thread's namespace, so no external sysctl tool is needed.
func (n *NS) SetSysctl(kv ...string) error {
	if len(kv)%2 != 0 {
		return fmt.Errorf("failed to set sysctls in %s: odd number of key/value arguments", n.Name)
	}
	return n.Do(func() error {
		for i := 0; i < len(kv); i += 2 {
			if err := os.WriteFile(sysctlPath(kv[i]), []byte(kv[i+1]), 0); err != nil {
				return fmt.Errorf("failed to set %s=%s in %s: %w", kv[i], kv[i+1], n.Name, err)
			}
		}
		return nil
	})
}

// Sysctl reads one net.* sysctl inside the namespace.
func (n *NS) Sysctl(key string) (string, error) {
	var v string
	err := n.Do(func() error {
		b, err := os.ReadFile(sysctlPath(key))
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("failed to read %s in %s: %w", key, n.Name, err)
	}
	return v, nil
}

// SNMP returns the namespace's protocol counters from /proc/net/snmp, /proc/net/netstat and
// /proc/net/snmp6, keyed "Proto.Field": "Tcp.OutRsts", "Icmp.OutMsgs", "TcpExt.ListenDrops",
// "Icmp6.OutMsgs", "Icmp6.OutDestUnreachs", "Udp6.InDatagrams"...
//
// The files are read through /proc/thread-self, because /proc/net follows the process's main
// thread, which stays in the host namespace.
func (n *NS) SNMP() (map[string]int64, error) {
	m := make(map[string]int64)
	err := n.Do(func() error {
		for _, f := range []string{"snmp", "netstat"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + f)
			if err != nil {
				return err
			}
			if err := parseSNMPPairs(b, m); err != nil {
				return fmt.Errorf("failed to parse /proc/net/%s: %w", f, err)
			}
		}
		b, err := os.ReadFile("/proc/thread-self/net/snmp6")
		if err != nil {
			if errors.Is(err, os.ErrNotExist) { // IPv6 disabled
				return nil
			}
			return err
		}
		return parseSNMP6(b, m)
	})
	if err != nil {
		return nil, fmt.Errorf("failed to read SNMP counters in %s: %w", n.Name, err)
	}
	return m, nil
}

// parseSNMPPairs parses the /proc/net/snmp layout: a header line "Proto: F1 F2 ..." followed by a
// value line "Proto: v1 v2 ...".
func parseSNMPPairs(b []byte, m map[string]int64) error {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines)%2 != 0 {
		return fmt.Errorf("odd number of lines (%d)", len(lines))
	}
	for i := 0; i < len(lines); i += 2 {
		hk, hrest, ok1 := strings.Cut(lines[i], ":")
		vk, vrest, ok2 := strings.Cut(lines[i+1], ":")
		if !ok1 || !ok2 || hk != vk {
			return fmt.Errorf("line %d: header %q does not match values %q", i+1, lines[i], lines[i+1])
		}
		names, vals := strings.Fields(hrest), strings.Fields(vrest)
		if len(names) != len(vals) {
			return fmt.Errorf("line %d: %d names but %d values", i+1, len(names), len(vals))
		}
		for j, name := range names {
			v, err := strconv.ParseInt(vals[j], 10, 64)
			if err != nil {
				return fmt.Errorf("line %d: %s: %w", i+2, name, err)
			}
			m[hk+"."+name] = v
		}
	}
	return nil
}

// snmp6Prefixes are the protocol prefixes of /proc/net/snmp6, longest first where one prefixes another.
var snmp6Prefixes = []string{"UdpLite6", "Icmp6", "Udp6", "Ip6"}

// parseSNMP6 parses the /proc/net/snmp6 layout: "Icmp6OutMsgs   12" per line.
func parseSNMP6(b []byte, m map[string]int64) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return fmt.Errorf("snmp6 line %d: want name and value, got %q", line, sc.Text())
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return fmt.Errorf("snmp6 line %d: %w", line, err)
		}
		key := f[0]
		for _, p := range snmp6Prefixes {
			if rest, ok := strings.CutPrefix(f[0], p); ok && rest != "" {
				key = p + "." + rest
				break
			}
		}
		m[key] = v
	}
	return sc.Err()
}

// ipCmd runs the ip tool in the host namespace; only ever with -n/netns arguments naming lab's
// own namespaces.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("failed to run `ip %s`: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
