"""iopkt: QNX io-pkt's driver model on Linux, with TAPs as the wire."""
__version__ = "0.1.0"
