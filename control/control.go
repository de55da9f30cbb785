package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Status is the answer to "stats": the daemon's state and counters. Field names are a contract:
// tests and operators' scripts read them.
type Status struct {
	Ready      bool     `json:"ready"`
	Version    string   `json:"version"`
	Config     string   `json:"config"`
	Generation uint32   `json:"generation"`
	Workers    int      `json:"workers"`
	Interfaces []string `json:"interfaces"`
	// IO is the packet I/O in use, [dataplane] io: "afpacket" or "afxdp" (with its xdp_mode,
	// "afxdp driver" or "afxdp generic" in the text output).
	IO      string `json:"io"`
	XDPMode string `json:"xdp_mode,omitempty"`
	// XDPIRQDefer is [dataplane] xdp_irq_defer with io = "afxdp"; XDPIRQDeferOn says whether the
	// interfaces' NAPI runs are deferred now (always for a duration, under load for "auto").
	XDPIRQDefer   string `json:"xdp_irq_defer,omitempty"`
	XDPIRQDeferOn bool   `json:"xdp_irq_defer_on"`
	// InterfaceProblems are what keeps an interface from carrying its traffic through govs, one
	// line each with what to do (with io = "afxdp": receive queues added, or the MTU raised,
	// since govs started); [] when none.
	InterfaceProblems []string          `json:"interface_problems"`
	Counters          map[string]uint64 `json:"counters"`
	Drops             map[string]uint64 `json:"drops"`
	DropsTotal        uint64            `json:"drops_total"`
	// Rings are the kernel's AF_PACKET ring statistics summed over sockets.
	Rings          RingStats       `json:"rings"`
	VirtualServers []VirtualServer `json:"virtual_servers"`
	// LastReload is the outcome of the latest reload attempt (SIGHUP); null until the first.
	LastReload *Reload `json:"last_reload"`
	// HA is the node's high-availability state; {"state": "standalone", ...} without [ha].
	HA HAStatus `json:"ha"`
	// Overrides are the runtime changes (`govs ctl weight|drain|disable`) in force; each lasts
	// until the next reload of the file, which drops it (Reload.OverridesDropped). [] when none
	// (null while govs starts).
	Overrides []Override `json:"overrides"`
}

// Override is one real server's runtime change.
type Override struct {
	Service string `json:"service"` // as listed: "tcp/198.18.0.100:80"
	Real    string `json:"real"`    // "198.19.0.11:80", "[2001:2::11]:80"
	// Weight is the weight in force, null when only Disabled is overridden; ConfiguredWeight is
	// the file's, which the next reload brings back.
	Weight           *int      `json:"weight"`
	ConfiguredWeight int       `json:"configured_weight"`
	Disabled         bool      `json:"disabled"`
	Since            time.Time `json:"since"`
}

// HAStatus is the high-availability part of Status.
type HAStatus struct {
	// State is "standalone" (no [ha]), or the node's role: "init", "backup", "active", "fault".
	State string `json:"state"`
	// Forwarding is whether the data plane forwards: always when stand-alone, only when active
	// (or handing over) in HA.
	Forwarding bool `json:"forwarding"`
	// The rest is set with [ha] only.
	Since    *time.Time `json:"since,omitempty"` // when State was entered
	Listen   string     `json:"listen,omitempty"`
	Priority int        `json:"priority,omitempty"`
	// AdvertisedPriority is what the node's heartbeats say: its priority, or 0 in fault and
	// while resigning.
	AdvertisedPriority int      `json:"advertised_priority"`
	Fault              string   `json:"fault,omitempty"` // why the node is in fault
	Peers              []HAPeer `json:"peers,omitempty"`
	// Heartbeats counted in datagrams: sent to peers, accepted from them, failed to send, and
	// received but dropped, by reason (malformed, unlisted, bad_mac, wrong_sender, old_seq, skew,
	// queue_full).
	HeartbeatsSent      uint64            `json:"heartbeats_sent"`
	HeartbeatsReceived  uint64            `json:"heartbeats_received"`
	HeartbeatSendErrors uint64            `json:"heartbeat_send_errors"`
	HeartbeatsDropped   map[string]uint64 `json:"heartbeats_dropped,omitempty"`
	HeartbeatDropsTotal uint64            `json:"heartbeat_drops_total"`
	Transitions         uint64            `json:"transitions"`
	// Sync is connection synchronisation's state and counters.
	Sync *HASync `json:"sync,omitempty"`
}

// HASync is connection synchronisation as `govs stats` shows it. Datagrams count per peer sent
// to; entries are connection changes.
type HASync struct {
	// Converged: this node holds the active node's table (always true on the active node).
	Converged       bool   `json:"converged"`
	SentDatagrams   uint64 `json:"sent_datagrams"`
	SentEntries     uint64 `json:"sent_entries"`
	SendErrors      uint64 `json:"send_errors"`
	Received        uint64 `json:"received_datagrams"`
	ReceivedEntries uint64 `json:"received_entries"`
	// Queued entries were handed to the workers; Installed were applied; Refused name a service
	// or real server this node does not have.
	Queued    uint64 `json:"queued"`
	Installed uint64 `json:"installed"`
	Refused   uint64 `json:"refused"`
	// Changes lost: to full export rings (the active then sends a snapshot), to full worker
	// inboxes, to a full receive queue; Gaps are sequence gaps (lost datagrams).
	ExportDropped uint64 `json:"export_dropped"`
	InboxDropped  uint64 `json:"inbox_dropped"`
	QueueDrops    uint64 `json:"queue_drops"`
	Gaps          uint64 `json:"gaps"`
	// Snapshots sent (active) and snapshot ends received (backup).
	SnapshotsSent     uint64 `json:"snapshots_sent"`
	SnapshotsReceived uint64 `json:"snapshots_received"`
	// Snapshot is the snapshot under way, or else the last one this node sent or received.
	Snapshot HASnapshot        `json:"snapshot"`
	Dropped  map[string]uint64 `json:"dropped,omitempty"`
	// LagMS is the time since the last batch was received (-1: never): on a backup of a busy
	// active node, how stale its table may be.
	LagMS int64 `json:"last_batch_ms"`
}

// HASnapshot is the progress of a connection-table snapshot: the one a node sends (active) or
// receives (backup) now, or else the last one (sending and receiving both false).
type HASnapshot struct {
	// Sending: the active node walks its table for a peer (paced, so a large table takes
	// seconds). Receiving: a backup gets the snapshot it asked for, from its first batch to the
	// snapshot's end; a backup converges at that end.
	Sending   bool `json:"sending"`
	Receiving bool `json:"receiving"`
	// Since is when it began; absent before the first snapshot.
	Since *time.Time `json:"since,omitempty"`
	// Entries the active node's walk has handed to the sender so far (all of them once it ended),
	// or a backup has received since the snapshot began (changes that share the stream
	// included). Total is the active node's table occupancy when the walk began (0 on a backup,
	// which does not know it): entries/total is how far a snapshot under way has got.
	Entries uint64 `json:"entries"`
	Total   uint64 `json:"total"`
}

// HAPeer is what a node knows about one of its peers.
type HAPeer struct {
	Address  string `json:"address"`
	State    string `json:"state"` // as last heard; "unknown" if never heard
	Priority int    `json:"priority"`
	Alive    bool   `json:"alive"`
	// LastHeardMS is how long ago its last authentic heartbeat arrived; -1 if never.
	LastHeardMS int64 `json:"last_heard_ms"`
}

// Reload is the outcome of one reload attempt.
type Reload struct {
	Time time.Time `json:"time"` // when it was attempted (RFC 3339)
	// Applied is false when the reload was rejected: the file did not parse or validate, or the
	// daemon refused it. The running configuration then stays.
	Applied bool `json:"applied"`
	// Error is why it was rejected, one problem per line (file:line: field: what is wrong); empty
	// when it was applied.
	Error string `json:"error"`
	// OverridesDropped are the runtime overrides an applied reload ended; absent when none.
	OverridesDropped []Override `json:"overrides_dropped,omitempty"`
	// PendingRestart are the settings an applied reload changed in the file that a running govs
	// cannot change (the [dataplane] keys, for one), each "file:line: field: ... takes effect at
	// the next start"; they keep their running values. Absent when none.
	PendingRestart []string `json:"pending_restart,omitempty"`
}

// List is the answer of `govs list -json`: the virtual servers and their real servers, with the
// field names of Status.
type List struct {
	Version        string          `json:"version"`
	VirtualServers []VirtualServer `json:"virtual_servers"` // [] rather than null when none
}

// List returns the listing part of st.
func (st *Status) List() List {
	l := List{Version: st.Version, VirtualServers: st.VirtualServers}
	if l.VirtualServers == nil {
		l.VirtualServers = []VirtualServer{}
	}
	return l
}

// RingStats are the kernel's counts for the receive rings.
type RingStats struct {
	Packets uint64 `json:"packets"`
	Drops   uint64 `json:"drops"`
	Freezes uint64 `json:"freezes"` // times a ring froze with every block held by govs
}

// VirtualServer is one virtual server in a listing.
type VirtualServer struct {
	Address     string       `json:"address"`
	Protocol    string       `json:"protocol"`
	Scheduler   string       `json:"scheduler"`
	Method      string       `json:"method"`
	RealServers []RealServer `json:"real_servers"`
	// Quorum is how many real servers must be up for the virtual server to take new connections
	// (0: no quorum); BelowQuorum says fewer are (up: resolved, not down, not disabled, weight
	// above 0), so its new connections go to its sorry server, or are dropped (counted as
	// no_quorum).
	Quorum      int  `json:"quorum"`
	BelowQuorum bool `json:"below_quorum"`
	// PersistenceTimeout is the persistence timeout in seconds (ipvsadm -p; 0: not persistent) and
	// PersistenceNetmask the prefix length clients are grouped by (0 when not persistent).
	PersistenceTimeout int64 `json:"persistence_timeout"`
	PersistenceNetmask int   `json:"persistence_netmask"`
	// LocalAddresses are a fullnat service's local addresses (omitted for the other methods).
	LocalAddresses []string `json:"local_addresses,omitempty"`
	// Tunnel is method tun's encapsulation, "ipip" or "gue", and TunnelPort GUE's UDP port (tun
	// only).
	Tunnel     string `json:"tunnel,omitempty"`
	TunnelPort int    `json:"tunnel_port,omitempty"`
	// Stats and Rate sum those of the service's real servers (those a reload removed and whose
	// connections drain included).
	Stats TrafficStats `json:"stats"`
	Rate  TrafficRate  `json:"rate"`
}

// TrafficStats are counts since govs started or since `govs ctl zero`, as ipvsadm --stats shows
// them: connections scheduled, packets and bytes (IP length) from clients (in) and back (out; only
// through govs under NAT: direct routing's replies bypass it).
type TrafficStats struct {
	Conns    uint64 `json:"conns"`
	InPkts   uint64 `json:"inpkts"`
	OutPkts  uint64 `json:"outpkts"`
	InBytes  uint64 `json:"inbytes"`
	OutBytes uint64 `json:"outbytes"`
}

// TrafficRate is TrafficStats per second, as ipvsadm --rate shows it: over the daemon's last
// sampling interval (about a second); zero until it has two samples.
type TrafficRate struct {
	CPS    float64 `json:"cps"`
	InPPS  float64 `json:"inpps"`
	OutPPS float64 `json:"outpps"`
	InBPS  float64 `json:"inbps"`
	OutBPS float64 `json:"outbps"`
}

// RealServer is one real server in a listing.
type RealServer struct {
	Address     string `json:"address"`
	Weight      int    `json:"weight"`
	Resolved    bool   `json:"resolved"`
	Connections int64  `json:"connections"` // active + inactive
	// ActiveConnections and InactiveConnections are IPVS's ActiveConn (ESTABLISHED) and InActConn
	// (every other state, and UDP).
	ActiveConnections   int64  `json:"active_connections"`
	InactiveConnections int64  `json:"inactive_connections"`
	Packets             uint64 `json:"packets"`
	// Overloaded: the server reached its upper_threshold and takes no new connections until it is
	// below its lower_threshold (IPVS's IP_VS_DEST_F_OVERLOAD).
	Overloaded bool `json:"overloaded"`
	// Health is what its health check says: "up", "down", "unknown" (checked, no result yet: out
	// of rotation) or "unchecked" (no health check: always in rotation).
	Health string `json:"health"`
	// HealthError is why its last check failed; "" when it succeeded or none ran yet.
	HealthError string `json:"health_error"`
	// Sorry: this entry is the virtual server's sorry server, not one of its real servers.
	Sorry bool `json:"sorry_server"`
	// Standby: it takes no new connections for now but keeps its established ones: a sorry
	// server while enough real servers are up, the real servers while the sorry server stands in.
	Standby bool `json:"standby"`
	// Disabled: `govs ctl disable` took it out of rotation until `govs ctl enable` or the next
	// reload of the file.
	Disabled bool `json:"disabled"`
	// PathMTU is the path MTU towards a tun real server that govs goes by now: its route's, or a
	// lower one a router reported (ICMP fragmentation needed / packet too big) in the last 10
	// minutes. Absent for other methods and while unknown.
	PathMTU int          `json:"path_mtu,omitempty"`
	Stats   TrafficStats `json:"stats"`
	Rate    TrafficRate  `json:"rate"`
}

// Handler answers requests; the daemon implements it.
type Handler interface {
	Status() Status
}

// Server serves a Handler on a unix socket. NewServer starts its goroutine; Close stops it.
type Server struct {
	ln   net.Listener
	path string
	h    Handler
	wg   sync.WaitGroup
}

// NewServer listens on path (removing a stale socket left by a previous run) and serves h.
func NewServer(path string, h Handler) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("failed to create the control socket's directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s is in use: is another govs running? set [control] socket to a different path", path)
	}
	// Only a socket is stale: anything else at the path is the operator's (a typo'd path may
	// name their configuration file), and stays.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: there is a %s at that path, not a socket, and govs leaves it alone; set [control] socket to another path", path, fileKind(fi.Mode()))
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on control socket %s: %w", path, err)
	}
	os.Chmod(path, 0o600)
	s := &Server{ln: ln, path: path, h: h}
	s.wg.Add(1)
	go s.routineAccept()
	return s, nil
}

func (s *Server) routineAccept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
		}()
	}
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		return
	}
	enc := json.NewEncoder(c)
	enc.SetIndent("", "  ")
	if err := peerAllowed(c); err != nil {
		enc.Encode(errorAnswer{err.Error()})
		return
	}
	name, args, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch name {
	case "stats", "list":
		enc.Encode(s.h.Status())
	default:
		s.command(c, enc, name, []byte(args))
	}
}

// Close stops serving and removes the socket (the listener unlinks the path it created).
func (s *Server) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// fileKind names what a file mode is, for an error message.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	}
	return "file (" + m.Type().String() + ")"
}

// Query sends cmd to the daemon at path and returns its raw JSON answer.
func Query(ctx context.Context, path, cmd string) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("failed to reach govs at %s (is `govs run` running, and is this its [control] socket?): %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte(cmd + "\n")); err != nil {
		return nil, fmt.Errorf("failed to send %q to govs: %w", cmd, err)
	}
	var b strings.Builder
	if _, err := bufio.NewReader(c).WriteTo(&b); err != nil {
		return nil, fmt.Errorf("failed to read govs's answer: %w", err)
	}
	return []byte(b.String()), nil
}

// QueryStatus asks for "stats" and decodes it.
func QueryStatus(ctx context.Context, path string) (*Status, error) {
	b, err := Query(ctx, path, "stats")
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("govs answered something that is not a status: %w", err)
	}
	return &st, nil
}
