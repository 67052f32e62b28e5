"""Entering a network namespace by name, for the calling thread only:
what a driver needs to open its TAP or socket where its link is (option
netns=), and what the lab builds its hosts with."""

from __future__ import annotations

import contextlib
import os

from pyroute2 import netns


def ns_path(name: str) -> str:
    """/run/netns/NAME, as /proc/self/mountinfo spells it (/var/run is
    a symlink to /run)."""
    return os.path.join(os.path.realpath(netns.NETNS_RUN_DIR), name)


@contextlib.contextmanager
def inside(name: str):
    """Run the block with the calling thread (only it: setns is per
    thread) in namespace `name`; back where it was afterwards. Sockets and
    TAPs opened in the block belong to `name` and stay there.
    FileNotFoundError if there is no such namespace (never creates one)."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.open(ns_path(name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            netns.setns(fd)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            netns.setns(back)
    finally:
        os.close(back)
