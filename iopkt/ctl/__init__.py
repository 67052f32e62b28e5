"""ctl: the control socket (server in the stack thread, client for the
commands) and the root-only run directory it lives in."""
