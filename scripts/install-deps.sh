#!/usr/bin/env bash
# Installs the Debian packages meshlet's tests and benchmark need. Idempotent: does nothing (not
# even `apt-get update`) when everything is present. Run as root on Debian 12.
# No service is left running: a temporary policy-rc.d forbids invoke-rc.d from starting daemons
# while we install, and any daemon a postinst started anyway is stopped by its pid file.
set -euo pipefail

# package -> a command that proves it is installed and usable
declare -A PROBE=(
  [nginx-light]=nginx
  [haproxy]=haproxy
  [wrk]=wrk
  [nghttp2-client]=h2load
  [iptables]=iptables
  [iproute2]=ip
  [curl]=curl
  [openssl]=openssl
  [tmux]=tmux
  [prometheus]=prometheus
)
ORDER=(nginx-light haproxy wrk nghttp2-client iptables iproute2 curl openssl tmux prometheus)

have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
on_path() { PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }

missing=()
for pkg in "${ORDER[@]}"; do
  if [[ $pkg == nginx-light ]] && { have nginx-light || have nginx || have nginx-core || have nginx-full; } && on_path nginx; then continue; fi
  if have "$pkg" && on_path "${PROBE[$pkg]}"; then continue; fi
  missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all present (${ORDER[*]})"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
POLICY=/usr/sbin/policy-rc.d
policy_backup=""
if [[ -e $POLICY ]]; then policy_backup=$(mktemp); cp -p "$POLICY" "$policy_backup"; fi
restore_policy() {
  if [[ -n $policy_backup ]]; then mv -f "$policy_backup" "$POLICY"; else rm -f "$POLICY"; fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# install-deps.sh: start no daemons while installing\nexit 101\n' >"$POLICY"
chmod 755 "$POLICY"

# nginx-light is gone from newer Debian releases; fall back to nginx.
apt-get update -qq
if [[ " ${missing[*]} " == *" nginx-light "* ]] && ! apt-cache show nginx-light >/dev/null 2>&1; then
  missing=("${missing[@]/nginx-light/nginx}")
fi
echo "install-deps: installing ${missing[*]}"
apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null

# Belt and braces: without systemd some postinst scripts start a daemon directly. Stop any of the
# packaged servers that came up, by the pid in its pid file (never by name).
for pidfile in /run/nginx.pid /run/haproxy.pid /run/prometheus.pid /run/prometheus/prometheus.pid; do
  if [[ -s $pidfile ]]; then
    pid=$(cat "$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
      echo "install-deps: stopping $pidfile (pid $pid) started by the install"
      kill "$pid" || true
    fi
  fi
done

for pkg in "${missing[@]}"; do
  ver=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo '?')
  echo "install-deps: installed $pkg $ver"
done
