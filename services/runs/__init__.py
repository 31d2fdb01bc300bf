"""Runs: the only authority that mints run artifacts and stores their attachments."""
