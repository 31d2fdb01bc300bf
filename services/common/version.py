"""The Custody release, reported by every service and stamped on every record it writes."""

from importlib.metadata import PackageNotFoundError, version

try:
    CUSTODY_VERSION = version("custody")
except PackageNotFoundError:  # running from a source tree that was never installed
    CUSTODY_VERSION = "0.0.0+unknown"
