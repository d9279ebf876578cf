#!/usr/bin/env bash
# Make sure podman (with the runc runtime), mmdebstrap and podman-compose's needs exist for the container
# tests (tests/e2e/test_container_image.py, tests/e2e/test_compose.py). Docker's engine does not run on the
# project's machines; podman from Debian's packages does (docs/deploy.md, "How the suite proves it").
set -euo pipefail

# netavark and aardvark-dns: container networks with DNS, so compose services reach each other by name.
PACKAGES=(podman runc mmdebstrap netavark aardvark-dns iptables)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "Missing for the container tests: ${missing[*]}; install them as root" \
       "(sudo apt-get install --no-install-recommends ${missing[*]}) or run 'make test' as root." >&2
  exit 1
fi

echo "Installing ${missing[*]} (apt-get install)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
