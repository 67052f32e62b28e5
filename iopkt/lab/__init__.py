"""lab: hosts in network namespaces around a stack (pyroute2), the record
of what a lab owns, and low-power CPU emulation (cgroups)."""
