#!/usr/bin/env bash
# Installs the system programs the test suite starts itself: redis-server and headless Chromium.
# They are started by the tests on 127.0.0.1 and stopped at the end; nothing here starts a service.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]} == 0)); then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "missing ${need[*]}; install them (Debian: apt-get install ${need[*]}) or run as root" >&2
  exit 1
fi
echo "installing ${need[*]} from Debian..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian enables and starts redis-server on install; the tests run their own on a free port.
if command -v service >/dev/null; then service redis-server stop >/dev/null 2>&1 || true; fi
