# Sourced by scripts/ensure-*.sh: the Debian packages the test suite drives, installed when missing and run as
# root, without starting the services they ship (the tests start their own, unprivileged, on free ports).

# Fail with how to install `$@`, naming what is missing ($1), unless running as root.
require_root() {
  local missing=$1
  shift
  if [ "$(id -u)" -ne 0 ]; then
    echo "$missing is missing: install Debian's package(s) as root" \
         "(sudo apt-get install --no-install-recommends $*) or run 'make test' as root." >&2
    exit 1
  fi
}

# Install packages; their post-install scripts may not start services (a policy-rc.d answering 101, "action
# forbidden", when the machine has none: container images usually ship one).
install_packages() {
  echo "Installing $* (apt-get install)..."
  export DEBIAN_FRONTEND=noninteractive
  local policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap "rm -f '$policy'" EXIT
  fi
  # Several installers run in a row: refresh the package lists only when none is from the last hour.
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 -print -quit 2>/dev/null)" ]; then
    apt-get update -qq
  fi
  apt-get install -y -qq --no-install-recommends "$@" > /dev/null
}

# With systemd as PID 1, stop and disable units a package started anyway.
stop_units() {
  if [ "$(ps --no-headers -o comm 1)" = "systemd" ]; then
    systemctl stop "$@" 2>/dev/null || true
    systemctl disable "$@" 2>/dev/null || true
    return 0
  fi
  return 1
}
