"""dev: what a driver is built from, after NetBSD's autoconf and the helpers
its sys/dev drivers share: the driver description and its options, device
errors, TAP open errors, entering a network namespace. Imports nothing of
iopkt but itself."""
