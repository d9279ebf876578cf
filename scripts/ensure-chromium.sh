#!/usr/bin/env bash
# Make sure Debian's Chromium and its WebDriver exist for the browser tests (tests/e2e/test_swagger_ui_browser.py).
# The tests drive this system browser; nothing downloads a browser build of its own (no `playwright install`).
set -euo pipefail
source "$(dirname "$0")/lib/debian-packages.sh"

CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver
if [ -x "$CHROMIUM" ] && [ -x "$DRIVER" ]; then exit 0; fi
require_root "Chromium ($CHROMIUM, $DRIVER)" chromium chromium-driver
install_packages chromium chromium-driver
for binary in "$CHROMIUM" "$DRIVER"; do
  [ -x "$binary" ] || { echo "chromium was installed but $binary is still missing." >&2; exit 1; }
done
