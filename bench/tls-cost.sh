#!/usr/bin/env bash
# What seeing HTTPS costs a server (docs/kernel.md, "TLS"): nginx serving a small answer over
# TLS (one worker, pinned to CPU 1, kept connections), wrk -t1 -c16 --latency pinned to CPU 0,
# the loader pinned to CPU 0 for the whole run (events to /dev/null). Each round measures, in
# turn: nginx not traced (the loader's programs attached, as on any host with an agent); nginx
# traced with OpenSSL's probes (`add` + `tls` of master and worker: its plaintext events, its
# ciphertext muted in the kernel); with TLS_OFF=1 also traced without them (trace_tls = false:
# the agent mutes the ciphertext; here the loader's `mute` of each connection is not sent, so
# its raw events go to the loader, an upper bound). Printed per phase: the worker's CPU per
# request (µs, from schedstat), requests/s, wrk's p99, the loader's CPU per request; medians.
#   [LOADER=path] bench/tls-cost.sh [rounds=5] [seconds=5]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}; SECS=${2:-5}
command -v wrk >/dev/null || { echo "wrk is needed (scripts/install.sh --test)" >&2; exit 1; }
LOADER=${LOADER:-src/bpf/build/seqtrace-loader} # another loader: LOADER=path (a wrapper adding --uprobes perf)
[ -x "$LOADER" ] || make -s -C src/bpf
. bench/agent-lib.sh # bench_tmp, cpu_ticks
. bench/trace-command.sh # start_loader
bench_tmp tls-cost
TICK_NS=$((1000000000 / $(getconf CLK_TCK)))
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity 10;
pid $TMP/nginx.pid;
error_log $TMP/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx; fastcgi_temp_path $TMP/nginx;
  uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$PORT ssl;
    ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem;
    location / { return 200 "hello\n"; }
  }
}
EOF
nginx -p "$TMP" -c "$TMP/nginx.conf" &
pids+=($!)
MASTER=$!
for _ in $(seq 100); do WORKER=$(pgrep -P "$MASTER" || true); [ -n "$WORKER" ] && break; sleep 0.05; done
[ -n "$WORKER" ] || { cat "$TMP/error.log" >&2; exit 1; }
LIB=$(awk '$6 ~ /\/libssl\.so(\.[0-9]+)*$/ { print $6; exit }' "/proc/$WORKER/maps")

start_loader "$LOADER" --mode socket

# phase NAME: one wrk run; prints "cpu_us_per_req req_per_s p99_us loader_ns_per_req"
phase() {
  local c0 l0 c1 l1 out reqs p99
  c0=$(cpu_ns "$WORKER"); l0=$(cpu_ticks "$LPID")
  out=$(taskset -c 0 wrk -t1 -c16 -d"${SECS}s" --latency "https://127.0.0.1:$PORT/")
  c1=$(cpu_ns "$WORKER"); l1=$(cpu_ticks "$LPID")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  p99=$(echo "$out" | awk '$1 == "99%" { v = $2; u = 1; if (v ~ /ms$/) u = 1000; else if (v ~ /us$/) u = 1; else if (v ~ /s$/) u = 1e6; sub(/[a-z]+$/, "", v); print v * u }')
  awk -v c=$((c1 - c0)) -v l=$(((l1 - l0) * TICK_NS)) -v n="$reqs" -v s="$SECS" -v p="$p99" \
    'BEGIN { printf "%.2f %.0f %.0f %.0f\n", c / 1e3 / n, n / s, p, l / n }'
}

PHASES=(untraced traced-tls)
[ "${TLS_OFF:-}" = 1 ] && PHASES+=(traced-no-tls)
echo "tls-cost: $ROUNDS rounds of ${SECS}s, nginx $(nginx -v 2>&1 | sed 's/.*\///'), $LIB, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A res
for r in $(seq "$ROUNDS"); do
  for ph in "${PHASES[@]}"; do
    case $ph in
      untraced) ;;
      traced-tls) echo "add $MASTER" >&3; echo "add $WORKER" >&3; echo "tls $WORKER /proc/$WORKER/root$LIB" >&3; sleep 0.5 ;;
      traced-no-tls) echo "add $MASTER" >&3; echo "add $WORKER" >&3; sleep 0.5 ;;
    esac
    out=$(phase)
    echo "del $WORKER" >&3; echo "del $MASTER" >&3; sleep 0.3 # (the next poll detaches the probes)
    res[$ph]+="$out;"
    read -r c q p l <<<"$out"
    echo " round $r $ph: $c µs CPU per request, $q req/s, p99 $p µs, loader $l ns per request"
  done
done
for ph in "${PHASES[@]}"; do
  echo "${res[$ph]}" | tr ';' '\n' | awk -v name="$ph" 'NF { c[++n] = $1; q[n] = $2; p[n] = $3; l[n] = $4 }
    function med(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    END { printf "median %s: %.2f µs CPU per request, %.0f req/s, p99 %.0f µs, loader %.0f ns per request\n", name, med(c, n), med(q, n), med(p, n), med(l, n) }'
done
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
