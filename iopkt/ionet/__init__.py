"""ionet: the io-net API as a legacy (devn-) driver sees it: npkts, the
function table, devctl commands. Imports nothing of iopkt: an io-net
driver knows nothing of mbufs."""
