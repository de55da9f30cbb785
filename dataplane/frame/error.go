package frame

// Error is why a frame could not be parsed; ErrNone (0) means parsed. It doubles as a metric label:
// String returns a stable snake_case name, and NumErrors sizes per-reason counter arrays.
//
// Naming rule: truncated_X means the frame ends before the fixed part of header X; bad_X_length means
// a length field of X contradicts the bytes present or the enclosing header.
type Error uint8

// The parse outcomes. New reasons are appended before numErrors so existing labels keep their values.
const (
	ErrNone                     Error = iota // parsed
	ErrTruncatedEthernet                     // fewer than 14 bytes
	ErrTruncatedVLAN                         // an 802.1Q/802.1ad tag is cut off
	ErrTooManyVLANs                          // more than 2 inline VLAN tags
	ErrUnsupportedEtherType                  // not IPv4, IPv6 or ARP (Parsed.EtherType is still set)
	ErrTruncatedARP                          // fewer than 28 bytes of ARP payload
	ErrTruncatedIPv4                         // fewer than 20 bytes, or fewer than IHL*4
	ErrBadIPv4Version                        // version field is not 4
	ErrBadIPv4IHL                            // IHL below 5
	ErrBadIPv4Length                         // total length below IHL*4 or beyond the frame
	ErrBadIPv4Checksum                       // header checksum does not verify
	ErrTruncatedIPv6                         // fewer than 40 bytes
	ErrBadIPv6Version                        // version field is not 6
	ErrBadIPv6Length                         // payload length beyond the frame
	ErrTruncatedIPv6Ext                      // an extension header runs past the payload
	ErrBadIPv6HopByHop                       // hop-by-hop options not directly after the IPv6 header (RFC 8200 4.3)
	ErrIPv6ExtChainTooLong                   // more than maxIPv6ExtHeaders extension headers
	ErrTruncatedTCP                          // fewer than 20 bytes of TCP header
	ErrBadTCPOffset                          // data offset below 5 or beyond the IP payload
	ErrTruncatedUDP                          // fewer than 8 bytes of UDP header
	ErrBadUDPLength                          // UDP length below 8, beyond the payload, or unequal to it
	ErrTruncatedICMP                         // fewer than 8 bytes of ICMP/ICMPv6 header
	ErrNotICMPError                          // ParseICMPError on a frame that is no ICMP error
	ErrTruncatedInnerIP                      // the quoted IP header of an ICMP error is cut off
	ErrBadInnerIPVersion                     // the quoted IP header is not of the outer family
	ErrBadInnerIPv4IHL                       // the quoted IPv4 header has IHL below 5
	ErrTruncatedInnerIPv6Ext                 // a quoted IPv6 extension header is cut off
	ErrInnerIPv6ExtChainTooLong              // the quoted IPv6 extension chain is too long
	ErrTruncatedInnerL4                      // fewer than 8 quoted bytes of the inner TCP/UDP/ICMP header
	numErrors
)

// NumErrors is the number of distinct Error values, for counter arrays: [NumErrors]uint64.
const NumErrors = int(numErrors)

var errorNames = [NumErrors]string{
	ErrNone:                     "none",
	ErrTruncatedEthernet:        "truncated_ethernet",
	ErrTruncatedVLAN:            "truncated_vlan",
	ErrTooManyVLANs:             "too_many_vlans",
	ErrUnsupportedEtherType:     "unsupported_ethertype",
	ErrTruncatedARP:             "truncated_arp",
	ErrTruncatedIPv4:            "truncated_ipv4",
	ErrBadIPv4Version:           "bad_ipv4_version",
	ErrBadIPv4IHL:               "bad_ipv4_ihl",
	ErrBadIPv4Length:            "bad_ipv4_length",
	ErrBadIPv4Checksum:          "bad_ipv4_checksum",
	ErrTruncatedIPv6:            "truncated_ipv6",
	ErrBadIPv6Version:           "bad_ipv6_version",
	ErrBadIPv6Length:            "bad_ipv6_length",
	ErrTruncatedIPv6Ext:         "truncated_ipv6_ext",
	ErrBadIPv6HopByHop:          "bad_ipv6_hop_by_hop",
	ErrIPv6ExtChainTooLong:      "ipv6_ext_chain_too_long",
	ErrTruncatedTCP:             "truncated_tcp",
	ErrBadTCPOffset:             "bad_tcp_offset",
	ErrTruncatedUDP:             "truncated_udp",
	ErrBadUDPLength:             "bad_udp_length",
	ErrTruncatedICMP:            "truncated_icmp",
	ErrNotICMPError:             "not_icmp_error",
	ErrTruncatedInnerIP:         "truncated_inner_ip",
	ErrBadInnerIPVersion:        "bad_inner_ip_version",
	ErrBadInnerIPv4IHL:          "bad_inner_ipv4_ihl",
	ErrTruncatedInnerIPv6Ext:    "truncated_inner_ipv6_ext",
	ErrInnerIPv6ExtChainTooLong: "inner_ipv6_ext_chain_too_long",
	ErrTruncatedInnerL4:         "truncated_inner_l4",
}

// String returns the metric label of e, or "unknown" for a value outside the list.
func (e Error) String() string {
	if int(e) < NumErrors {
		return errorNames[e]
	}
	return "unknown"
}
