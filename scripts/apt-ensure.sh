#!/usr/bin/env bash
# Install the named Debian packages that are not installed yet (apt-get update only when needed).
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian starts packaged services on install on some systems; Lorong runs its own instances.
for svc in mosquitto influxdb postgresql; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
