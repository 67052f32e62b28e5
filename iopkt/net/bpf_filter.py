"""Capture filters: tcpdump's expressions (pcap-filter(7)), compiled by
libpcap into a BPF program and run on each frame by libpcap's own BPF
interpreter, in C (BSD's bpf_filter; the kernel's classic BPF is the same
machine). Nothing here parses the filter language: libpcap does, so an
expression means exactly what it means to tcpdump.

    prog = BpfProgram("tcp port 80 and host 198.19.0.2", snaplen=96)
    n = prog.match(m, wirelen)      # 0: rejected; else how many bytes to keep

libpcap is reached through ctypes (the system's libpcap.so.0.8, which
tcpdump needs too; Debian's libpcap0.8): pcap_open_dead and pcap_compile
make the program once, when a capture starts; bpf_filter runs it. A frame
in one mbuf is filtered where it lies (the address of its cluster is found
once per cluster and kept while the program lives); a chain (a TSO
super-frame) is first copied into one scratch buffer, as BSD's bpf_mtap
gathers a chain for a filter that reads past the first mbuf. A rejected
frame costs the call and nothing else: no copy, no allocation of ours.
"""

from __future__ import annotations

import ctypes

from iopkt.net.bpf import BPF_MAXFRAME, SNAPLEN_MAX

DLT_EN10MB = 1              # Ethernet, pcap's LINKTYPE_ETHERNET
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF


class FilterError(ValueError):
    """The expression does not compile (libpcap's message), or libpcap is
    missing: a usage error for whoever asked."""


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


# What distributions call the library tcpdump uses: Debian and Ubuntu
# (libpcap0.8), then Fedora, Arch and others.
LIBPCAP_NAMES = ("libpcap.so.0.8", "libpcap.so.1")

_lib = None


def libpcap():
    """The loaded libpcap with the prototypes we use (loaded once), or
    FilterError saying what to install."""
    global _lib
    if _lib is not None:
        return _lib
    for name in LIBPCAP_NAMES:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        raise FilterError("a capture filter needs libpcap (Debian: apt install libpcap0.8, "
                          "which tcpdump brings)")
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    # Addresses as plain ints (c_void_p): the cheapest call ctypes makes,
    # about half the cost of passing the instruction array as an object.
    lib.bpf_filter.restype = ctypes.c_uint
    lib.bpf_filter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    lib.pcap_lib_version.restype = ctypes.c_char_p
    _lib = lib
    return lib


def lib_version() -> str:
    return libpcap().pcap_lib_version().decode()


class BpfProgram:
    """One compiled expression (`insns`, the program). It takes at most
    `snaplen` bytes of a frame (match's answer)."""

    def __init__(self, expression: str, snaplen: int = SNAPLEN_MAX):
        lib = libpcap()
        if not 1 <= snaplen <= SNAPLEN_MAX:
            raise FilterError(f"snaplen {snaplen}: must be 1..{SNAPLEN_MAX}")
        try:
            text = expression.encode("ascii")
        except UnicodeEncodeError:
            raise FilterError(f"filter {expression!r}: not ASCII") from None
        p = lib.pcap_open_dead(DLT_EN10MB, snaplen)      # fails only if malloc does
        prog = _Program()
        try:
            if lib.pcap_compile(p, ctypes.byref(prog), text, 1, PCAP_NETMASK_UNKNOWN) != 0:
                why = lib.pcap_geterr(p).decode()   # ASCII: so is the expression
                raise FilterError(f"filter '{expression}': {why}")
            # Our own copy of the instructions: libpcap's are freed at once.
            self.insns = (_Insn * prog.bf_len)(*prog.bf_insns[:prog.bf_len])
            self._insns_addr = ctypes.addressof(self.insns)
            lib.pcap_freecode(ctypes.byref(prog))
        finally:
            lib.pcap_close(p)
        self._run = lib.bpf_filter
        self._addr: dict[int, tuple] = {}      # id(storage) -> _pinned(storage)
        self._scratch = bytearray(BPF_MAXFRAME)      # a chain is gathered here
        self._scratch_pin, self._scratch_addr = _pinned(self._scratch)

    def match(self, m, wirelen: int) -> int:
        """Run the program on the frame in mbuf `m` (data at the Ethernet
        header; a chain of `wirelen` bytes in all). Returns how many bytes
        of it to keep: 0 rejects it. The mbuf stays the caller's, unchanged."""
        if m.next is None:
            buf = m.buf
            ent = self._addr.get(id(buf))
            if ent is None:
                ent = self._addr[id(buf)] = _pinned(buf)
            return self._run(self._insns_addr, ent[1] + m.off, wirelen, m.len)
        scratch = self._scratch
        n = 0
        x = m
        while x is not None and n < len(scratch):
            k = min(x.len, len(scratch) - n)
            scratch[n:n + k] = x.view[x.off:x.off + k]
            n += k
            x = x.next
        return self._run(self._insns_addr, self._scratch_addr, wirelen, n)


def _pinned(buf: bytearray) -> tuple:
    """(a view exporting `buf`, where its bytes are). A bytearray moves only
    when it is resized, and one with an export cannot be: while the view
    lives (as long as the program) the address holds, and `buf` is alive,
    so its id is not reused either."""
    view = (ctypes.c_char * len(buf)).from_buffer(buf)
    return view, ctypes.addressof(view)
