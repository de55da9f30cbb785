//go:build linux

package health

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/govs/govs/internal/netnstest"
)

// peerLab is two network namespaces joined by a veth pair: hc plays the balancer, whose stack
// the checks leave from, and rs the real server, whose services the tests start.
type peerLab struct {
	hc, rs string
	dial   DialFunc
	server netip.Addr // the real server's address, in rs
}

var (
	labBalancer = netip.MustParseAddr("198.18.0.1")
	labServer   = netip.MustParseAddr("198.18.0.2")
)

func newPeerLab(t *testing.T) *peerLab {
	t.Helper()
	netnstest.RequireRoot(t)
	l := &peerLab{hc: netnstest.NewNetns(t, "hc"), rs: netnstest.NewNetns(t, "hcrs"), server: labServer}
	netnstest.IP(t, "-n", l.hc, "link", "add", "h0", "type", "veth", "peer", "name", "r0", "netns", l.rs)
	netnstest.IP(t, "-n", l.hc, "addr", "add", labBalancer.String()+"/24", "dev", "h0")
	netnstest.IP(t, "-n", l.rs, "addr", "add", labServer.String()+"/24", "dev", "r0")
	netnstest.IP(t, "-n", l.hc, "link", "set", "h0", "up")
	netnstest.IP(t, "-n", l.rs, "link", "set", "r0", "up")
	h, err := netns.GetFromName(l.hc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	l.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			// The thread never leaves the namespace, so it is never unlocked: the runtime
			// discards it when the goroutine ends. The socket stays in hc.
			runtime.LockOSThread()
			if err := netns.Set(h); err != nil {
				ch <- result{nil, err}
				return
			}
			c, err := defaultDial(ctx, network, address)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return l
}

// at is the real server's address with port.
func (l *peerLab) at(port uint16) netip.AddrPort { return netip.AddrPortFrom(l.server, port) }

// listen opens a TCP listener in rs, closed at cleanup.
func (l *peerLab) listen(t *testing.T, port uint16) net.Listener {
	t.Helper()
	var ln net.Listener
	netnstest.Do(t, l.rs, func() (err error) {
		ln, err = net.Listen("tcp", l.at(port).String())
		return err
	})
	t.Cleanup(func() { ln.Close() })
	return ln
}

// listenUDP opens a UDP socket in rs, closed at cleanup.
func (l *peerLab) listenUDP(t *testing.T, port uint16) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	netnstest.Do(t, l.rs, func() (err error) {
		pc, err = net.ListenPacket("udp", l.at(port).String())
		return err
	})
	t.Cleanup(func() { pc.Close() })
	return pc
}

// serveHTTP serves h on ln (with TLS when cfg is not nil) until cleanup.
func serveHTTP(t *testing.T, ln net.Listener, h http.Handler, cfg *tls.Config) *http.Server {
	t.Helper()
	// The handshakes the tests fail on purpose would otherwise be logged.
	srv := &http.Server{Handler: h, TLSConfig: cfg, ErrorLog: log.New(io.Discard, "", 0)}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return srv
}

// serveConns runs handle on every connection ln accepts, until cleanup.
func serveConns(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := make(map[net.Conn]bool)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// selfSigned returns a certificate for www.example.com and the lab server's address, signed by
// its own key: what a real server behind a balancer often has.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "www.example.com"},
		DNSNames:              []string{"www.example.com"},
		IPAddresses:           []net.IP{labServer.AsSlice()},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
