// Package dataplane forwards frames for govs's virtual services: worker goroutines, each pinned to
// a CPU, read frames from AF_PACKET TPACKETv3 rings, find or create the connection, pick a real
// server and rewrite (NAT), re-address (DR) or encapsulate (tun, tunnel.go) the frame into a TX
// ring.
//
// Why this shape: every per-packet decision is made by one worker from state only it writes (its
// connection table shard, its scheduler instances, its counters) and from immutable compiled
// Tables that the daemon publishes with an atomic pointer swap. The kernel's PACKET_FANOUT, driven
// by a classic BPF program that hashes the client side of each flow, sends both directions of a
// NAT connection to the same worker, so no lock is shared between workers on the per-packet path.
//
// A batch of frames goes through a worker in three steps (Worker.ProcessBatch): parse every frame
// and hash its tuple; have the connection table prefetch the batch's index slots and entries, so
// their cache misses overlap, and guess each frame's entry; then forward frame by frame. A frame
// whose guessed entry holds its tuple, of an established connection without anything unusual
// (offload state, VLAN tag, a client's SYN, a real server gone), takes the express lane: rewrite,
// touch and transmit in a few straight steps. Every other frame takes the general way (forward),
// which schedules new connections. Both leave the same state (TestProcessBatchSameAsProcess).
//
// With io = "afxdp" the NIC's queues, not a fanout group, decide which worker's socket receives a
// frame; the XDP program marks each frame with the worker the same hash chooses, and the worker
// that reads a frame of another hands it over through a single-producer, single-consumer ring
// (steer.go).
//
// IP fragments are the one case where the hash cannot put a frame where its connection is: only
// a datagram's first fragment has ports. Every fragment goes to a worker by client address; that
// worker hands the datagram's fragments to the flow's worker over a bounded single-producer,
// single-consumer ring (frags.go explains the choice). Only fragments take that way.
//
// What leaves a worker for the rest of govs leaves the same way, through its own bounded
// single-producer rings (spscRing) that never make it wait: connection changes for HA sync
// (sync.go) and connection-log events (connlog.go), each drained by a goroutine outside the data
// plane.
//
// The one state workers share that is not in the Tables is the path MTU towards tun real servers
// learned from routers' ICMP errors (pathmtu.go): one atomic word per real-server address, read
// per tunnelled packet, written by whichever worker receives a checked error.
//
// The package does not read configuration: the daemon compiles config into Tables.
package dataplane
