"""The platform every Custody service is built on: one of each (bootstrap, config, errors, identity, ...)."""
