"""net: the link layer, as in NetBSD's sys/net: the interface (ifnet) and its
queues, Ethernet, the virtio-net header, the routing table, bpf taps.
Imports kern only."""
