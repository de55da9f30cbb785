// Package health checks real servers from the balancer's own network stack and tells one owner
// when a server goes up or down.
//
// A Checker runs one check of one kind (tcp, http, https, send_expect, udp, dns, exec) within a
// deadline. A Manager runs a monitor per real server: it checks every Spec.Interval, counts
// consecutive results against Spec.Rise and Spec.Fall, and queues each change of state for its
// owner, who is woken through Changed and takes the changes with Drain. Manager.Update replaces
// the set of monitored servers, keeping the state of those whose Spec did not change, so a
// reload does not send healthy servers back through Unknown.
//
// The package imports only the standard library and golang.org/x/net/dns/dnsmessage: it knows
// nothing of the config file or the data plane, which the daemon connects to it.
package health
