"""devn-buggy: a legacy driver that breaks the io-net contract on purpose.

It is devn-tap with one mistake, chosen by `bug=KIND`, made on the first
`count=N` packets it handles (then it behaves), so a test can count the
exact number of violations the shim reports and then see traffic flow.
Found by the stack through IOPKT_DRIVER_PATH (tests/drivers).
"""
from iopkt.dev.autoconf import Driver, Option

from . import devn_buggy

DRIVER = Driver(name="devn-buggy", kind="legacy",
                description="test driver: devn-tap with one io-net contract bug",
                options={k: Option(type(v), v, "") for k, v in devn_buggy.OPTIONS.items()},
                module=devn_buggy)
DRIVERS = [DRIVER]
