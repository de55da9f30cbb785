// Package lab builds throwaway network-namespace topologies (client, balancer, switch, real servers)
// and runs real servers and clients inside them in-process, so govs can be tested end to end against
// the real kernel without touching the host's own network.
package lab
