"""kern: what the stack thread runs on, as in NetBSD's sys/kern: mbufs and their
pool, the hand-off queue from other threads, the pacer, callouts and the
epoll loop. Imports nothing of iopkt."""
