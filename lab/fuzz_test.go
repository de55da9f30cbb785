package lab

import "testing"

// FuzzParseSNMP feeds arbitrary text to both /proc/net parsers: they may reject it, never panic.
func FuzzParseSNMP(f *testing.F) {
	f.Add([]byte("Ip: Forwarding DefaultTTL\nIp: 2 64\n"))
	f.Add([]byte("Icmp6OutMsgs 9\nUdpLite6InErrors 1\n"))
	f.Add([]byte("Ip: A B\nIp: 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = parseSNMPPairs(b, map[string]int64{})
		_ = parseSNMP6(b, map[string]int64{})
	})
}
