package sched

import (
	"fmt"
	"strings"
)

// Flags are IPVS scheduler flags (ipvsadm --sched-flags). Each belongs to one scheduler.
type Flags uint16

const (
	// FlagSHFallback makes sh (and dh) pick another server when the hashed one is unusable
	// (sh-fallback).
	FlagSHFallback Flags = 1 << iota
	// FlagSHPort makes sh hash the source port as well as the source address, and dh the
	// destination port with the destination address (sh-port).
	FlagSHPort
	// FlagMHFallback makes mh pick another server when the hashed one is unusable (mh-fallback).
	FlagMHFallback
	// FlagMHPort makes mh hash the source port as well as the source address (mh-port).
	FlagMHPort
)

var flagNames = []struct {
	f     Flags
	name  string
	sched string
}{
	{FlagSHFallback, "sh-fallback", "sh or dh"},
	{FlagSHPort, "sh-port", "sh or dh"},
	{FlagMHFallback, "mh-fallback", "mh"},
	{FlagMHPort, "mh-port", "mh"},
}

// String returns the flags as ipvsadm writes them, comma separated, e.g. "sh-fallback,sh-port".
func (f Flags) String() string {
	if f == 0 {
		return "none"
	}
	var b strings.Builder
	for _, n := range flagNames {
		if f&n.f != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n.name)
			f &^= n.f
		}
	}
	if f != 0 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%#x", uint16(f))
	}
	return b.String()
}

// FlagsFor returns the flags scheduler name accepts (0 for unknown names and schedulers without
// flags).
func FlagsFor(name string) Flags {
	switch name {
	case "sh", "dh":
		return FlagSHFallback | FlagSHPort
	case "mh":
		return FlagMHFallback | FlagMHPort
	}
	return 0
}

// ParseFlag parses a scheduler flag such as "sh-fallback", or a comma-separated list of them as
// ipvsadm -b takes ("sh-fallback,sh-port").
func ParseFlag(s string) (Flags, error) {
	var f Flags
	pos := 0
	for part := range strings.SplitSeq(s, ",") {
		name := strings.TrimSpace(part)
		found := false
		for _, n := range flagNames {
			if name == n.name {
				f |= n.f
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown scheduler flag %q at offset %d in %q: use sh-fallback, sh-port (sh, dh) or mh-fallback, mh-port (mh)", name, pos, s)
		}
		pos += len(part) + 1
	}
	return f, nil
}

// flagHint says which scheduler the flags in f belong to.
func flagHint(f Flags) string {
	var hints []string
	for _, n := range flagNames {
		if f&n.f != 0 {
			hints = append(hints, n.name+" is for the "+n.sched+" scheduler")
		}
	}
	if len(hints) == 0 {
		return "no scheduler takes it"
	}
	return strings.Join(hints, ", ")
}
