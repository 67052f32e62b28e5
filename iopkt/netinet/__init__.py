"""netinet: IPv4, as in NetBSD's sys/netinet: input, forwarding and output,
ARP, ICMP, checksums, software offload (segmentation and checksum
completion). Imports net and kern."""
