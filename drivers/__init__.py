"""Drivers, one folder each, found by name (see iopkt/drvload.py).

Each folder's package exports DRIVERS: a list of iopkt.drvload.Driver.
"""
