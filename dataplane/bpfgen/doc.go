// Package bpfgen compiles the service table into classic BPF, so the kernel drops traffic the
// balancer does not serve before it is copied into the ring and steers both directions of a
// connection to the same worker.
package bpfgen
