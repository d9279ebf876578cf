#!/usr/bin/env bash
# Make sure Debian's Chromium and its WebDriver exist for the browser tests (tests/e2e/test_swagger_ui_browser.py).
# The tests drive this system browser; nothing downloads a browser build of its own (no `playwright install`).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver
if [ -x "$CHROMIUM" ] && [ -x "$DRIVER" ]; then exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium is missing ($CHROMIUM or $DRIVER not found): install Debian's 'chromium' and 'chromium-driver'" \
       "packages as root (sudo apt-get install --no-install-recommends chromium chromium-driver) or run 'make test' as root." >&2
  exit 1
fi

echo "Installing Chromium (apt-get install chromium chromium-driver)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver > /dev/null

for binary in "$CHROMIUM" "$DRIVER"; do
  [ -x "$binary" ] || { echo "chromium was installed but $binary is still missing." >&2; exit 1; }
done
