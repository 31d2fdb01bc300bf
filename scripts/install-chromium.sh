#!/usr/bin/env bash
# Installs the Chromium the browser tests drive (tests/browser/): Debian's `chromium` package, never a browser
# downloaded by Playwright. `make test` runs it first. Idempotent: it does nothing when a usable Chromium is
# already there, which is $CUSTODY_CHROMIUM when set (then nothing is installed: that exact binary must work),
# else /usr/bin/chromium. tests/support/browser.py finds the browser the same way.
# Installing needs root: it runs apt-get directly as root, through `sudo -n` otherwise, and else stops saying
# what to run. Recommended packages are left out: headless Chromium needs none of them (fonts come with
# fontconfig's own dependencies).
set -euo pipefail

DEBIAN_CHROMIUM=/usr/bin/chromium

usable() {
  [[ -x "$1" ]] && "$1" --version >/dev/null 2>&1
}

if [[ -n "${CUSTODY_CHROMIUM:-}" ]]; then
  if usable "$CUSTODY_CHROMIUM"; then
    exit 0
  fi
  echo "install-chromium: CUSTODY_CHROMIUM=$CUSTODY_CHROMIUM is not a working Chromium (\`$CUSTODY_CHROMIUM --version\` fails)." >&2
  echo "install-chromium: point it at a working chromium binary, or unset it to use Debian's $DEBIAN_CHROMIUM." >&2
  exit 1
fi

if usable "$DEBIAN_CHROMIUM"; then
  exit 0
fi

manual="apt-get update && apt-get install -y --no-install-recommends chromium"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no $DEBIAN_CHROMIUM and no apt-get (not Debian?): install Chromium yourself and set" >&2
  echo "install-chromium: CUSTODY_CHROMIUM to its executable." >&2
  exit 1
fi
if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "install-chromium: the browser tests need Debian's chromium, and installing it needs root." >&2
  echo "install-chromium: run as root:  $manual" >&2
  echo "install-chromium: (or: sudo $0), or set CUSTODY_CHROMIUM to an existing Chromium executable." >&2
  exit 1
fi

echo "install-chromium: installing Debian's chromium (apt-get, --no-install-recommends)"
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)
# Fresh package lists: a stale list names versions the mirror no longer has. Only reached when chromium is missing.
"${apt[@]}" update
"${apt[@]}" install -y --no-install-recommends chromium >/dev/null

if ! usable "$DEBIAN_CHROMIUM"; then
  echo "install-chromium: apt-get installed chromium but \`$DEBIAN_CHROMIUM --version\` fails." >&2
  exit 1
fi
echo "install-chromium: $("$DEBIAN_CHROMIUM" --version 2>/dev/null)"
