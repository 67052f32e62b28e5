"""stack: io-pkt itself: assembles a stack (the loop, the pool, the
interfaces, IPv4) and mounts drivers by name. Imports the layers below."""
