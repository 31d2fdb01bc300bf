"""Fault harnesses: commands that break the running suite on purpose (kill it, cut its dependencies away) and print
what survived, as figures."""
