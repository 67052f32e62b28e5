"""netinet6: IPv6, as in NetBSD's sys/netinet6: addresses, input,
forwarding and output, ICMPv6, Neighbour Discovery. Imports netinet (the
checksum and software offload it shares with IPv4), net and kern."""
