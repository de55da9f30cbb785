// Package e2e runs the govs binary between real clients and real servers in network namespaces
// built by lab, because only the real kernel shows whether forwarding, ARP/NDP answering and the
// balancer host's silence actually hold.
//
// Run as root from the repository root (TestMain builds ./cmd/govs with CGO_ENABLED=0; set
// GOVS_BIN to test a prebuilt binary instead):
//
//	go test -count=1 -timeout 15m -v ./test/e2e/
//	go test -count=1 -v -run 'TestForwarding/ipv6/dr' ./test/e2e/
//
// Without root the tests skip, unless CI=true, where they fail.
package e2e
