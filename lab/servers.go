package lab

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Ports the real servers listen on.
const (
	HTTPPort    = 80   // HTTP, see StartServers
	HTTPAltPort = 8080 // same handler, for a second virtual service
	UDPEchoPort = 9000 // UDP echo, replies "rsN:<payload>"
)

// MaxBytes caps /bytes?n=.
const MaxBytes = 1 << 30

// Servers are the applications running on a topology's real servers; StartServers starts them.
type Servers struct {
	// Names[i] is real server i's name, "rs1", "rs2", ..., which is also its HTTP body on "/".
	Names []string

	accepted []atomic.Int64 // TCP connections accepted, per server
	mu       sync.Mutex
	peers    [][]netip.AddrPort // guarded by mu: per server, the sources it saw (see Peers)
	https    []*http.Server
	udp      []net.PacketConn
	wg       sync.WaitGroup
	once     sync.Once
}

// StartServers starts on every real server of t:
//   - HTTP on :80 and :8080 (all addresses): "/" answers "rsN\n"; "/bytes?n=N" answers N bytes of
//     the pattern that VerifyPattern checks; a POST to "/upload" of N bytes of that pattern (with a
//     Content-Length) answers "N\n" once all arrived intact;
//   - UDP echo on port 9000, bound to each of the server's addresses (and to the VIPs for DR and tun, so
//     replies leave from the address the request was sent to), answering "rsN:<payload>".
func StartServers(t *Topology) (*Servers, error) {
	s := &Servers{accepted: make([]atomic.Int64, len(t.Servers)), peers: make([][]netip.AddrPort, len(t.Servers))}
	for i, ns := range t.Servers {
		name := fmt.Sprintf("rs%d", i+1)
		s.Names = append(s.Names, name)
		if err := s.startHTTP(i, ns, name); err != nil {
			return nil, errors.Join(err, s.Close())
		}
		addrs := []netip.Addr{t.ServerAddrs4[i]}
		if t.Options.IPv6 {
			addrs = append(addrs, t.ServerAddrs6[i])
		}
		if t.Options.Method == "dr" || t.Options.Method == "tun" {
			addrs = append(addrs, t.VIP4)
			if t.Options.IPv6 {
				addrs = append(addrs, t.VIP6)
			}
		}
		for _, a := range addrs {
			if err := s.startUDP(i, ns, name, a); err != nil {
				return nil, errors.Join(err, s.Close())
			}
		}
	}
	return s, nil
}

// Accepted returns how many TCP connections real server i (0-based) has accepted so far.
func (s *Servers) Accepted(i int) int64 { return s.accepted[i].Load() }

// maxPeers bounds the sources a server remembers.
const maxPeers = 1 << 16

// Peers returns the sources real server i (0-based) saw, in order, up to maxPeers: the remote
// address and port of each TCP connection it accepted (on either HTTP port) and the source of each
// UDP echo request. A FullNAT test checks there that the source is a local address of the
// balancer, not the client.
func (s *Servers) Peers(i int) []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.peers[i]...)
}

// saw records a source of real server i.
func (s *Servers) saw(i int, a net.Addr) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.peers[i]) < maxPeers {
		s.peers[i] = append(s.peers[i], netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
}

func (s *Servers) startHTTP(i int, ns *NS, name string) error {
	body := []byte(name + "\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 || n > MaxBytes {
			http.Error(w, "want /bytes?n=N with 0 <= N <= 2^30", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("X-Server", name)
		buf := make([]byte, 64<<10)
		for off := int64(0); off < n; {
			k := min(int64(len(buf)), n-off)
			FillPattern(buf[:k], off)
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			off += k
		}
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		if err := VerifyPattern(r.Body, r.ContentLength); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Server", name)
		fmt.Fprintf(w, "%d\n", r.ContentLength)
	})
	for _, port := range []int{HTTPPort, HTTPAltPort} {
		l, err := ns.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return err
		}
		srv := &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ConnState: func(c net.Conn, st http.ConnState) {
				if st == http.StateNew {
					s.accepted[i].Add(1)
					s.saw(i, c.RemoteAddr())
				}
			},
		}
		s.https = append(s.https, srv)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = srv.Serve(l) // returns http.ErrServerClosed on Close
		}()
	}
	return nil
}

func (s *Servers) startUDP(i int, ns *NS, name string, a netip.Addr) error {
	c, err := ns.ListenPacket("udp", netip.AddrPortFrom(a, UDPEchoPort).String())
	if err != nil {
		return err
	}
	s.udp = append(s.udp, c)
	// Room for bursts of large datagrams from many flows at once (TestFragments): the default
	// buffer holds about a dozen reassembled 9000-byte datagrams.
	_ = c.(*net.UDPConn).SetReadBuffer(8 << 20)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 64<<10)
		out := make([]byte, 0, len(buf)+len(name)+1)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // e.g. ICMP-induced errors; the socket is still usable
			}
			s.saw(i, from)
			out = append(append(append(out[:0], name...), ':'), buf[:n]...)
			_, _ = c.WriteTo(out, from)
		}
	}()
	return nil
}

// Close stops every server and waits for their goroutines.
func (s *Servers) Close() error {
	var errs []error
	s.once.Do(func() {
		for _, srv := range s.https {
			errs = append(errs, srv.Close())
		}
		for _, c := range s.udp {
			errs = append(errs, c.Close())
		}
		s.wg.Wait()
	})
	return errors.Join(errs...)
}
