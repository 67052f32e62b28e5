"""devn-tap with one deliberate io-net contract bug (see __init__)."""

from devn_tap import devn_tap
from iopkt.ionet import ionet
from iopkt.ionet.ionet import EOK, npkt_t

BUGS = ("tx_done_twice", "tx_done_unknown", "bad_framelen", "bad_tot_iov",
        "bad_ref_cnt", "not_up", "up_while_held", "bad_reg_hdl")
OPTIONS = {**devn_tap.OPTIONS, "bug": "", "count": 1}


class DevnBuggy(devn_tap.DevnTap):
    def __init__(self, dll_hdl, ion, opts):
        if opts["bug"] not in BUGS:
            raise ValueError(f"option bug={opts['bug']}: one of {', '.join(BUGS)}")
        super().__init__(dll_hdl, ion, opts)
        self.bug = opts["bug"]
        self.left = opts["count"]

    def _due(self, kinds) -> bool:
        if self.bug in kinds and self.left > 0:
            self.left -= 1
            return True
        return False

    def fill_up(self, npkt: npkt_t, n: int) -> None:
        super().fill_up(npkt, n)
        if self._due(("bad_framelen", "bad_tot_iov", "bad_ref_cnt", "not_up")):
            if self.bug == "bad_framelen":
                npkt.framelen = n + 4            # e.g. counted the FCS it stripped
            elif self.bug == "bad_tot_iov":
                npkt.tot_iov = 2
            elif self.bug == "bad_ref_cnt":
                npkt.ref_cnt = 2
            else:
                npkt.flags = 0

    def up_one(self, npkt: npkt_t) -> None:
        if self._due(("bad_reg_hdl",)):
            # A handle io-net never gave (a stale one, a typo): refused,
            # so the npkt is still ours.
            ion = self.ion
            ion.reg_tx_done(self.reg_hdl, npkt, self)
            if ion.tx_up(self.reg_hdl + 1, npkt, 0, 0, self.cell, self.endpoint, 0) <= 0:
                self._recycle(npkt)
            return
        super().up_one(npkt)
        if self._due(("up_while_held",)):
            # The same npkt again, while the shim still has it.
            self.ion.tx_up(self.reg_hdl, npkt, 0, 0, self.cell, self.endpoint, 0)

    def rx_down(self, npkt: npkt_t) -> int:
        if self.bug == "tx_done_unknown" and self._due(("tx_done_unknown",)):
            self.ion.tx_done(self.reg_hdl, npkt_t())
        twice = self._due(("tx_done_twice",))
        r = super().rx_down(npkt)
        if twice:
            self.ion.tx_done(self.reg_hdl, npkt)
        return r


def init(dll_hdl, ion, options: str) -> int:
    opts = ionet.parse_options(options, OPTIONS)
    if opts["bug"] in ("bad_framelen", "bad_tot_iov", "bad_ref_cnt", "not_up", "up_while_held",
                       "bad_reg_hdl"):
        opts["batch"] = 0                       # one tx_up per frame: exact counts
    drv = DevnBuggy(dll_hdl, ion, opts)
    drv.register()
    return EOK


def shutdown(dll_hdl) -> int:
    return EOK
