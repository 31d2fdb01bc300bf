#!/usr/bin/env bash
# Installs Debian's Chromium for the console's browser tests (Playwright drives it; it never downloads a browser).
# Idempotent: does nothing when a usable Chromium is there ($CUSTODY_CHROMIUM, else /usr/bin/chromium).
# `make test` runs it first; it needs root (or sudo) only when Chromium is missing.
set -euo pipefail

chromium="${CUSTODY_CHROMIUM:-/usr/bin/chromium}"
if "$chromium" --version >/dev/null 2>&1; then
    exit 0
fi
if [ -n "${CUSTODY_CHROMIUM:-}" ]; then
    echo "install-chromium: CUSTODY_CHROMIUM=$chromium does not run; unset it to install Debian's chromium" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: no apt-get here; install Chromium yourself and set CUSTODY_CHROMIUM to its path" >&2
    exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-chromium: Chromium is missing and installing it needs root: run" \
             "'sudo apt-get install -y chromium', or set CUSTODY_CHROMIUM to a Chromium binary" >&2
        exit 1
    fi
    as_root=(sudo)
fi
echo "install-chromium: installing Debian's chromium (for the console's browser tests)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null; then
    "${as_root[@]}" apt-get update -q >/dev/null
    "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null
fi
"$chromium" --version >&2
