#!/usr/bin/env bash
# Make sure podman (with the runc runtime), mmdebstrap and podman-compose's needs exist for the container
# tests (tests/e2e/test_container_image.py, tests/e2e/test_compose.py). Docker's engine does not run on the
# project's machines; podman from Debian's packages does (docs/deploy.md, "How the suite proves it").
set -euo pipefail
source "$(dirname "$0")/lib/debian-packages.sh"

# netavark and aardvark-dns: container networks with DNS, so compose services reach each other by name.
PACKAGES=(podman runc mmdebstrap netavark aardvark-dns iptables)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi

require_root "What the container tests need (${missing[*]})" "${missing[@]}"
install_packages "${missing[@]}"
