//go:build linux

package health

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/govs/govs/internal/netnstest"
)

// Ports of the services the real server runs in these tests; the ones marked closed have none.
const (
	portHTTP       = 8080
	portHTTPS      = 8443
	portClosed     = 8081 // nothing listens: connection refused, ICMP port unreachable
	portPong       = 6379 // a line protocol: PING -> +PONG
	portGreeter    = 2525 // speaks first: "220 mail ready"
	portSilent     = 7000 // accepts and reads, never answers
	portCloser     = 7001 // says BYE and closes
	portEcho       = 9000 // UDP echo
	portSilentUDP  = 9001 // UDP, never answers
	portDNS        = 53
	portSilentDNS  = 5300
	portClosedDNS  = 5301
	checkTimeout   = 5 * time.Second        // for checks that should end well before it
	expiryTimeout  = 300 * time.Millisecond // for checks that should run into it
	replyTimeout   = time.Second            // the same, when the message quotes a reply that must come first
	wantUp         = ""
	serviceForTest = "tcp/198.18.0.100:80"
)

type checkCase struct {
	name string
	spec Spec // Kind and its keys; timing filled in by runCases
	port uint16
	want string // "" for up, else a part of the error
}

func runCases(t *testing.T, l *peerLab, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			spec.Interval, spec.Rise, spec.Fall = 10*time.Second, 1, 1
			if spec.Timeout == 0 {
				spec.Timeout = checkTimeout
			}
			c, err := NewChecker(spec, Target{Service: serviceForTest, Server: l.at(tc.port)}, l.dial)
			if err != nil {
				t.Fatalf("NewChecker: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), spec.Timeout)
			defer cancel()
			err = c.Check(ctx)
			t.Logf("Check = %v", err)
			switch {
			case tc.want == wantUp && err != nil:
				t.Fatalf("Check = %v, want up", err)
			case tc.want != wantUp && err == nil:
				t.Fatalf("Check = up, want down with %q", tc.want)
			case tc.want != wantUp && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Check = %v, want down with %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Fatalf("Check = %q, want one line", err)
			}
		})
	}
}

// httpHandler is the real server's web application.
func httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "root") })
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello govs") })
	mux.HandleFunc("/status/500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "broken", 500) })
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/host", func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "www.example.com" {
			http.Error(w, "wrong host "+r.Host, http.StatusMisdirectedRequest)
			return
		}
		io.WriteString(w, "vhost")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	})
	return mux
}

func TestCheckHTTP(t *testing.T) {
	l := newPeerLab(t)
	serveHTTP(t, l.listen(t, portHTTP), httpHandler(), nil)
	http := func(path string) Spec { return Spec{Kind: KindHTTP, Path: path} }
	mod := func(s Spec, f func(*Spec)) Spec { f(&s); return s }
	runCases(t, l, []checkCase{
		{"up", http("/ok"), portHTTP, wantUp},
		{"default path is /", http(""), portHTTP, wantUp},
		{"wrong status", http("/status/500"), portHTTP, "GET http://198.18.0.2:8080/status/500: status 500, want 2xx"},
		{"not found", http("/missing"), portHTTP, "status 404, want 2xx"},
		{"listed status", mod(http("/nocontent"), func(s *Spec) { s.ExpectStatus = []int{200, 204} }), portHTTP, wantUp},
		{"unlisted status", mod(http("/nocontent"), func(s *Spec) { s.ExpectStatus = []int{200} }), portHTTP, "status 204, want 200"},
		{"redirect is not followed", http("/redirect"), portHTTP, "status 302, want 2xx"},
		{"redirect expected", mod(http("/redirect"), func(s *Spec) { s.ExpectStatus = []int{301, 302} }), portHTTP, wantUp},
		{"body matches", mod(http("/ok"), func(s *Spec) { s.ExpectBody = "^hello" }), portHTTP, wantUp},
		{"wrong body", mod(http("/ok"), func(s *Spec) { s.ExpectBody = "^bye" }), portHTTP, `body "hello govs" does not match "^bye"`},
		{"host header", mod(http("/host"), func(s *Spec) { s.Host = "www.example.com" }), portHTTP, wantUp},
		{"missing host header", http("/host"), portHTTP, "status 421"},
		{"port override", mod(http("/ok"), func(s *Spec) { s.Port = portHTTP }), portClosed, wantUp},
		{"server stopped", http("/ok"), portClosed, "GET http://198.18.0.2:8081/ok: connection refused"},
		{"timeout", mod(http("/slow"), func(s *Spec) { s.Timeout = expiryTimeout }), portHTTP, "GET http://198.18.0.2:8080/slow: no answer in time"},
	})
}

func TestCheckHTTPS(t *testing.T) {
	l := newPeerLab(t)
	cert := selfSigned(t)
	var sniMu sync.Mutex
	var lastSNI string
	cfg := &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		sniMu.Lock()
		lastSNI = hello.ServerName
		sniMu.Unlock()
		return &cert, nil
	}}
	serveHTTP(t, l.listen(t, portHTTPS), httpHandler(), cfg)
	serveHTTP(t, l.listen(t, portHTTP), httpHandler(), nil)
	https := func(path string) Spec { return Spec{Kind: KindHTTPS, Path: path} }
	mod := func(s Spec, f func(*Spec)) Spec { f(&s); return s }
	runCases(t, l, []checkCase{
		{"up, certificate not verified", https("/ok"), portHTTPS, wantUp},
		{"verified self-signed certificate", mod(https("/ok"), func(s *Spec) { s.TLSVerify = true }), portHTTPS, "certificate signed by unknown authority"},
		{"wrong status", https("/status/500"), portHTTPS, "GET https://198.18.0.2:8443/status/500: status 500, want 2xx"},
		{"wrong body", mod(https("/ok"), func(s *Spec) { s.ExpectBody = "^bye" }), portHTTPS, "does not match"},
		{"https to a plain http server", https("/ok"), portHTTP, "GET https://198.18.0.2:8080/ok: "},
		{"http to an https server", Spec{Kind: KindHTTP, Path: "/ok"}, portHTTPS, "status 400, want 2xx"},
		{"server stopped", https("/ok"), portClosed, "connection refused"},
		{"timeout", mod(https("/slow"), func(s *Spec) { s.Timeout = expiryTimeout }), portHTTPS, "no answer in time"},
	})

	// The name sent in the handshake: sni, else the Host header's, else none for an address.
	for _, tc := range []struct {
		name    string
		spec    Spec
		wantSNI string
	}{
		{"sni", mod(https("/ok"), func(s *Spec) { s.SNI = "api.example.com" }), "api.example.com"},
		{"host", mod(https("/host"), func(s *Spec) { s.Host = "www.example.com" }), "www.example.com"},
		{"host with port", mod(https("/ok"), func(s *Spec) { s.Host = "www.example.com:8443" }), "www.example.com"},
		{"neither", https("/ok"), ""},
	} {
		sniMu.Lock()
		lastSNI = "(no handshake)"
		sniMu.Unlock()
		runCases(t, l, []checkCase{{"SNI from " + tc.name, tc.spec, portHTTPS, wantUp}})
		sniMu.Lock()
		got := lastSNI
		sniMu.Unlock()
		if got != tc.wantSNI {
			t.Errorf("SNI from %s: server saw %q, want %q", tc.name, got, tc.wantSNI)
		}
	}
}

// serveLines answers a line protocol: PING gets +PONG, anything else -ERR; the connection stays
// open until the client closes it.
func serveLines(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.TrimSpace(line) == "PING" {
			io.WriteString(c, "+PONG\r\n")
		} else {
			io.WriteString(c, "-ERR unknown command\r\n")
		}
	}
}

// startTCPPeers starts the real server's TCP services but HTTP.
func startTCPPeers(t *testing.T, l *peerLab) {
	serveConns(t, l.listen(t, portPong), serveLines)
	serveConns(t, l.listen(t, portGreeter), func(c net.Conn) {
		io.WriteString(c, "220 mail ready\r\n")
		io.Copy(io.Discard, c)
	})
	serveConns(t, l.listen(t, portSilent), func(c net.Conn) { io.Copy(io.Discard, c) })
	serveConns(t, l.listen(t, portCloser), func(c net.Conn) {
		// Read the request first: closing with it unread would reset the connection.
		bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "BYE\r\n")
	})
}

func TestCheckTCPAndSendExpect(t *testing.T) {
	l := newPeerLab(t)
	startTCPPeers(t, l)
	se := func(send, expect string) Spec { return Spec{Kind: KindSendExpect, Send: send, Expect: expect} }
	runCases(t, l, []checkCase{
		{"tcp up", Spec{Kind: KindTCP}, portPong, wantUp},
		{"tcp server stopped", Spec{Kind: KindTCP}, portClosed, "connect to 198.18.0.2:8081: connection refused"},
		{"send_expect up", se("PING\r\n", `^\+PONG`), portPong, wantUp},
		{"wrong reply", withTimeout(se("HELLO\r\n", `^\+PONG`), replyTimeout), portPong,
			`read from 198.18.0.2:6379: no answer in time; the reply so far "-ERR unknown command\r\n" does not match "^\\+PONG"`},
		{"greeting, nothing sent", se("", `^220 `), portGreeter, wantUp},
		{"wrong greeting", withTimeout(se("", `^554`), replyTimeout), portGreeter, `the reply so far "220 mail ready\r\n" does not match "^554"`},
		{"no answer", withTimeout(se("PING\r\n", `^\+PONG`), expiryTimeout), portSilent, `read from 198.18.0.2:7000: no answer in time; the reply so far "" does not match`},
		{"closed after a wrong reply", se("PING\r\n", `^\+PONG`), portCloser, `198.18.0.2:7001 closed the connection; the reply "BYE\r\n" does not match "^\\+PONG"`},
		{"server stopped", se("PING\r\n", `^\+PONG`), portClosed, "connect to 198.18.0.2:8081: connection refused"},
	})
}

func withTimeout(s Spec, timeout time.Duration) Spec {
	s.Timeout = timeout
	return s
}

// noICMPRateLimit lets the real server answer every closed port at once: these tests send a few
// datagrams to closed ports within a second, which the default limit would leave unanswered.
func noICMPRateLimit(t *testing.T, l *peerLab) {
	netnstest.Sysctl(t, l.rs, "net.ipv4.icmp_ratelimit=0")
}

func TestCheckUDP(t *testing.T) {
	l := newPeerLab(t)
	noICMPRateLimit(t, l)
	echo := l.listenUDP(t, portEcho)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(buf[:n], from)
		}
	}()
	silent := l.listenUDP(t, portSilentUDP)
	go io.Copy(io.Discard, readerOf(silent))
	udp := func(send, expect string) Spec { return Spec{Kind: KindUDP, Send: send, Expect: expect} }
	runCases(t, l, []checkCase{
		{"up", udp("ping", "^ping$"), portEcho, wantUp},
		{"any reply", udp("ping", ""), portEcho, wantUp},
		{"wrong reply", withTimeout(udp("ping", "^pong"), replyTimeout), portEcho, `read from 198.18.0.2:9000: no answer in time; the last reply "ping" does not match "^pong"`},
		{"no answer", withTimeout(udp("ping", ""), expiryTimeout), portSilentUDP, "read from 198.18.0.2:9001: no answer in time"},
		{"server stopped", udp("ping", "^ping$"), portClosed, "read from 198.18.0.2:8081: connection refused"},
	})
}

// readerOf reads datagrams off pc as a stream, to discard them.
func readerOf(pc net.PacketConn) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		n, _, err := pc.ReadFrom(p)
		return n, err
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// serveDNS is a small authoritative server for example.: svc.example. has an A record (and no
// AAAA), fail.example. fails, noisy.example. is answered after two answers that are not to the
// question asked, and every other name does not exist.
func serveDNS(pc net.PacketConn) {
	buf := make([]byte, 512)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		reply := func(id uint16, q dnsmessage.Question, rcode dnsmessage.RCode, a *dnsmessage.AResource) {
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, Authoritative: true, RCode: rcode})
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			if a != nil {
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, *a)
			}
			msg, err := b.Finish()
			if err == nil {
				pc.WriteTo(msg, from)
			}
		}
		switch strings.ToLower(q.Name.String()) {
		case "svc.example.":
			if q.Type == dnsmessage.TypeA {
				reply(h.ID, q, dnsmessage.RCodeSuccess, &dnsmessage.AResource{A: labServer.As4()})
			} else {
				reply(h.ID, q, dnsmessage.RCodeSuccess, nil)
			}
		case "fail.example.":
			reply(h.ID, q, dnsmessage.RCodeServerFailure, nil)
		case "noisy.example.":
			reply(h.ID+1, q, dnsmessage.RCodeNameError, nil) // another query's answer
			other := q
			other.Name = dnsmessage.MustNewName("other.example.")
			reply(h.ID, other, dnsmessage.RCodeNameError, nil) // an answer to another question
			reply(h.ID, q, dnsmessage.RCodeSuccess, &dnsmessage.AResource{A: labServer.As4()})
		default:
			reply(h.ID, q, dnsmessage.RCodeNameError, nil)
		}
	}
}

func TestCheckDNS(t *testing.T) {
	l := newPeerLab(t)
	noICMPRateLimit(t, l)
	go serveDNS(l.listenUDP(t, portDNS))
	silent := l.listenUDP(t, portSilentDNS)
	go io.Copy(io.Discard, readerOf(silent))
	dns := func(name, qtype string) Spec { return Spec{Kind: KindDNS, Query: name, QueryType: qtype} }
	runCases(t, l, []checkCase{
		{"up", dns("svc.example.", "A"), portDNS, wantUp},
		{"default type A", dns("svc.example.", ""), portDNS, wantUp},
		{"name without the final dot", dns("svc.example", "A"), portDNS, wantUp},
		{"no data is an answer", dns("svc.example.", "AAAA"), portDNS, wantUp},
		{"answers to other queries skipped", dns("noisy.example.", "A"), portDNS, wantUp},
		{"no such name", dns("nope.example.", "A"), portDNS, "DNS A nope.example. at 198.18.0.2:53: answer NXDOMAIN, want NOERROR"},
		{"server failure", dns("fail.example.", "MX"), portDNS, "DNS MX fail.example. at 198.18.0.2:53: answer SERVFAIL, want NOERROR"},
		{"no answer", withTimeout(dns("svc.example.", "A"), expiryTimeout), portSilentDNS, "DNS A svc.example. at 198.18.0.2:5300: no answer in time"},
		{"server stopped", dns("svc.example.", "A"), portClosedDNS, "DNS A svc.example. at 198.18.0.2:5301: connection refused"},
	})
}

// TestCheckExec runs a check script from the balancer's namespace (through ip netns exec, which
// enters it and execs the script in the same process) against the real server's services.
func TestCheckExec(t *testing.T) {
	l := newPeerLab(t)
	startTCPPeers(t, l)
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	ip, err = filepath.Abs(ip)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "check-pong")
	body := `#!/bin/bash
echo "$GOVS_VIRTUAL_SERVER $GOVS_REAL_SERVER $GOVS_REAL_SERVER_ADDRESS $GOVS_REAL_SERVER_PORT" > "$0.env"
exec 3<>"/dev/tcp/$GOVS_REAL_SERVER_ADDRESS/$GOVS_REAL_SERVER_PORT" || exit 1
printf 'PING\r\n' >&3
read -r reply <&3
case "$reply" in "+PONG"*) exit 0;; esac
echo "unexpected reply: $reply"
exit 2
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	check := Spec{Kind: KindExec, Command: []string{ip, "netns", "exec", l.hc, script}}
	runCases(t, l, []checkCase{
		{"up", check, portPong, wantUp},
		{"wrong reply", check, portGreeter, ` exited with status 2: "unexpected reply: 220 mail ready"`},
		{"server stopped", check, portClosed, " exited with status 1: "},
		{"no answer", withTimeout(check, expiryTimeout), portSilent, " did not finish in time; its process group was killed"},
	})
	b, err := os.ReadFile(script + ".env")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "tcp/198.18.0.100:80 198.18.0.2:7000 198.18.0.2 7000\n"; got != want {
		t.Errorf("the script's environment had %q, want %q", got, want)
	}
}

// TestMonitorHTTP runs a monitor against a real HTTP server that breaks, stops and comes back,
// step by step on a fake clock: rise and fall are counted check by check.
func TestMonitorHTTP(t *testing.T) {
	l := newPeerLab(t)
	var status atomic.Int32
	status.Store(200)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(status.Load())) })
	srv := serveHTTP(t, l.listen(t, portHTTP), app, nil)

	clk := newFakeClock()
	m := NewManager(Options{Dial: l.dial, Clock: clk})
	t.Cleanup(m.Close)
	tg := Target{Service: serviceForTest, Server: l.at(portHTTP)}
	spec := Spec{Kind: KindHTTP, Interval: 2 * time.Second, Timeout: checkTimeout, Rise: 2, Fall: 2, Path: "/healthz"}
	if err := m.Update(map[Target]Spec{tg: spec}); err != nil {
		t.Fatal(err)
	}
	step := func() {
		t.Helper()
		clk.waitTimers(t, 1)
		clk.Advance(spec.Interval)
		clk.waitTimers(t, 1)
	}
	expect := func(label string, want ...string) {
		t.Helper()
		if got := transitions(m.Drain()); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%s: transitions %q, want %q", label, got, want)
		}
	}
	clk.waitTimers(t, 1)
	expect("first check", "198.18.0.2:8080 unknown>up")

	status.Store(503)
	step()
	expect("one 503")
	step()
	evs := m.Drain()
	if got := transitions(evs); len(got) != 1 || got[0] != "198.18.0.2:8080 up>down" || !strings.Contains(evs[0].Reason, "status 503") {
		t.Fatalf("second 503: events %+v, want up>down for status 503", evs)
	}

	// The server stops altogether: still down, now refused.
	srv.Close()
	step()
	expect("server stopped")
	if st := m.Status(); len(st) != 1 || !strings.Contains(st[0].LastError, "connection refused") {
		t.Fatalf("Status = %+v, want the last error to be a refused connection", st)
	}

	// It comes back healthy: up after rise = 2 checks.
	status.Store(200)
	serveHTTP(t, l.listen(t, portHTTP), app, nil)
	step()
	expect("one success")
	step()
	expect("second success", "198.18.0.2:8080 down>up")
}

// TestCheckIPv6 checks a real server by its IPv6 address: the URL and the addresses dialled
// bracket it.
func TestCheckIPv6(t *testing.T) {
	l := newPeerLab(t)
	netnstest.IP(t, "-n", l.hc, "addr", "add", "2001:2::1/64", "dev", "h0", "nodad")
	netnstest.IP(t, "-n", l.rs, "addr", "add", "2001:2::2/64", "dev", "r0", "nodad")
	l.server = netip.MustParseAddr("2001:2::2")
	serveHTTP(t, l.listen(t, portHTTP), httpHandler(), nil)
	echo := l.listenUDP(t, portEcho)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(buf[:n], from)
		}
	}()
	runCases(t, l, []checkCase{
		{"http up", Spec{Kind: KindHTTP, Path: "/ok"}, portHTTP, wantUp},
		{"http wrong status", Spec{Kind: KindHTTP, Path: "/status/500"}, portHTTP, "GET http://[2001:2::2]:8080/status/500: status 500, want 2xx"},
		{"udp up", Spec{Kind: KindUDP, Send: "ping", Expect: "^ping$"}, portEcho, wantUp},
		{"tcp stopped", Spec{Kind: KindTCP}, portClosed, "connect to [2001:2::2]:8081: connection refused"},
	})
}
