#!/usr/bin/env bash
# Install the Debian packages the test suite uses (PostgreSQL, slapd, chromium), only when
# missing. Needs root (CI is).
# No system service is left running: the suite starts its own PostgreSQL cluster and slapd
# on free loopback ports, and never uses a server it did not start.
set -euo pipefail
need=()
have_pg() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1; }
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need+=(slapd ldap-utils)
have_pg || need+=(postgresql)
# The console's browser tests drive Debian's chromium through playwright (never a download).
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "sysdeps: missing ${need[*]} and not root: install them (sudo make sysdeps)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [[ " ${need[*]} " == *" postgresql "* ]]; then
  # The package would create and start a cluster on 5432: we want its binaries only.
  mkdir -p /etc/postgresql-common
  grep -qs '^create_main_cluster *= *false' /etc/postgresql-common/createcluster.conf ||
    echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
fi
# Debian's maintainer scripts start services unless policy-rc.d says no; say no for this run.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
fi
trap 'if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
for svc in slapd postgresql; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done
pkill -x slapd >/dev/null 2>&1 || true
echo "sysdeps: installed ${need[*]}"
