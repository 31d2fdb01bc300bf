"""Custody services. `common` is the shared platform; every other package is one service process."""
