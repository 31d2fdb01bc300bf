"""Fault harnesses: crashes and outages against real service processes, printing their figures."""
