// Package bench proves govs's speed claims with the operators' own traffic: it generates
// synthetic captures, replays captures offline through the data plane's own workers, and
// transmits captures live through a TPACKETv3 TX ring.
package bench
