#!/usr/bin/env bash
# Install Debian's chromium for the headless-browser test of report.html
# (tests/test_report_html.py), unless /usr/bin/chromium is already there. Idempotent: a second
# run does nothing. Needs root (CI and the developer machines run as root) or sudo.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-chromium.sh: /usr/bin/chromium is missing and this user cannot install it" >&2
    echo "  (run as root: apt-get install -y chromium)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
# fonts-dejavu-core: a page with no font installed renders its text as boxes.
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
