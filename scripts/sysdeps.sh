#!/usr/bin/env bash
# Install the Debian packages the test suite uses, only when missing. Needs root (CI is).
set -euo pipefail
need=()
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need+=(slapd ldap-utils)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "sysdeps: missing ${need[*]} and not root; LDAP provider tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
systemctl disable --now slapd >/dev/null 2>&1 || service slapd stop >/dev/null 2>&1 || true
pkill -x slapd >/dev/null 2>&1 || true
echo "sysdeps: installed ${need[*]}"
