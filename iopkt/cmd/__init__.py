"""cmd: the iopkt command, one module per command family. The top layer."""
