#!/usr/bin/env bash
# Installs what seqtrace needs on Debian 12 as root, then builds it.
#   scripts/install.sh          run-time needs: clang/libbpf to build the eBPF side, Go to build the
#                               Go-binary reader (src/agent/go/gooffsets), npm packages
#   scripts/install.sh --test   also what the test suite drives: real servers, wrk, Go, Java, Chromium
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev make gcc pkg-config iproute2 curl golang-go)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(nginx apache2 varnish haproxy wrk chromium python3 python3-aiohttp openjdk-17-jdk-headless tomcat10 php-fpm uwsgi-core uwsgi-plugin-python3 procps psmisc bpftrace)
fi
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx and apache2 start themselves on install; the tests run their own instances.
if [ "${1:-}" = "--test" ]; then
  systemctl disable --now nginx apache2 >/dev/null 2>&1 || true
  pkill -x nginx >/dev/null 2>&1 || true
  pkill -x apache2 >/dev/null 2>&1 || true
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
