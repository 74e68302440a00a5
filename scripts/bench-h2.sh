#!/usr/bin/env bash
# make bench-h2: HTTP/2 clients (h2c, prior knowledge) through Sluice and
# through HAProxy, to HTTP/1.1 endpoints, side by side: small requests,
# ten streams at a time on each of 10 connections and on each of 50, and
# 1 MiB downloads, one stream at a time on each of 10 connections. No
# target of issue 8 covers HTTP/2; this is what a user moving a browser-
# or gRPC-facing HAProxy would ask.
#
# One nginx answers "ok" and serves a 1 MiB file. One HAProxy (nbthread 1,
# `bind ... proto h2`) and the node (GOMAXPROCS=1, whose HTTP listeners take
# h2c by default) stand in front of it, on loopback. Each round runs
# `h2load -D DURATION` against either side, in turns, the first side
# alternating; the table gives each side's median rate, their ratio and
# the CPU time each spent per request or MiB over its rounds (from
# /proc/PID/stat).
#
# Knobs: ROUNDS (4), DURATION (5s); NODE, the sluice-dp to run
# (bin/sluice-dp), to compare builds. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-4} DURATION=${DURATION:-5s} NODE=${NODE:-bin/sluice-dp}
[[ $DURATION =~ ^[0-9]+s$ ]] || { echo "bench-h2: DURATION=$DURATION: a whole number of s, as 5s" >&2; exit 2; }
for cmd in nginx haproxy h2load; do
  command -v $cmd >/dev/null || { echo "bench-h2: needs $cmd (apt-get install nginx haproxy nghttp2-client)" >&2; exit 1; }
done
. scripts/sidebyside.sh
sbs_init bench-h2

head -c 1048576 /dev/urandom >"$RUN/big.bin"
cat >"$RUN/backend.conf" <<CONF
worker_processes 1;
daemon on;
pid $RUN/backend.pid;
error_log $RUN/backend.err;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:19106; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:19107; root $RUN; location / { try_files /big.bin =404; } }
}
CONF
nginx -c "$RUN/backend.conf"

cat >"$RUN/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
  pidfile $RUN/haproxy.pid
  daemon
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
listen small
  bind 127.0.0.1:19187 proto h2
  server small 127.0.0.1:19106
listen big
  bind 127.0.0.1:19188 proto h2
  server big 127.0.0.1:19107
CONF
haproxy -f "$RUN/haproxy.cfg"

sbs_node bench-h2 examples/bench-h2.yaml
for port in 19287 19288 19187 19188; do
  ok=
  for _ in $(seq 100); do h2load -n1 "http://127.0.0.1:$port/" 2>/dev/null | grep -q '^status codes: 1 2xx' && ok=1 && break; sleep 0.1; done
  [ -n "$ok" ] || { echo "bench-h2: nothing answers HTTP/2 on 127.0.0.1:$port" >&2; exit 1; }
done
hap=$(cat "$RUN/haproxy.pid")

secs=${DURATION%s}
# round CASE SIDE PORT PID CONNS STREAMS: one h2load run; appends "CASE
# SIDE rate/s ticks responses" to $RUN/rounds.txt. A run with a failed
# request or a non-2xx answer stops the bench: its figure would not be a
# rate.
round() {
  local c0 out c1 done
  c0=$(cputime "$4")
  out=$(h2load -D "$secs" -c "$5" -m "$6" "http://127.0.0.1:$3/" 2>&1)
  c1=$(cputime "$4")
  done=$(awk '/^requests:/{print $8}' <<<"$out")
  if ! grep -qE "^requests: .* [0-9]+ succeeded, 0 failed, 0 errored" <<<"$out" ||
    ! grep -qE "^status codes: [0-9]+ 2xx, 0 3xx, 0 4xx, 0 5xx" <<<"$out"; then
    echo "bench-h2: $1 through $2 failed:" >&2; echo "$out" >&2; exit 1
  fi
  echo "$1 $2 $(awk -v n="$done" -v s="$secs" 'BEGIN{print n / s}') $((c1 - c0)) $done" >>"$RUN/rounds.txt"
}
cases=("small 19287 19187 10 10" "small-50 19287 19187 50 10" "1-MiB 19288 19188 10 1")
for c in "${cases[@]}"; do
  sbs_pairs $c
done

# The table: medians of each side's rounds, the ratio of the medians, CPU
# per request (small) or per MiB (1 MiB: one MiB a response).
{
echo "| HTTP/2 to HTTP/1.1 ($ROUNDS rounds of $DURATION) | Sluice | HAProxy | ratio | CPU, Sluice / HAProxy |"
echo "|---|---|---|---|---|"
for c in "${cases[@]}"; do
  read -r name _ _ conns streams <<<"$c"
  awk -v name="$name" -v hz="$hz" -v conns="$conns" -v streams="$streams" "$sbs_medians"'
    END {
      medians()
      if (name ~ /^small/)
        printf "| small requests, %d connections of %d streams | %.0f req/s | %.0f req/s | %.2f× | %.1f / %.1f µs per request |\n", conns, streams, m["sluice"], m["haproxy"], m["sluice"] / m["haproxy"], t["sluice"] / hz / q["sluice"] * 1e6, t["haproxy"] / hz / q["haproxy"] * 1e6
      else
        printf "| 1 MiB downloads, %d connections of %d stream | %.0f MiB/s | %.0f MiB/s | %.2f× | %.2f / %.2f ms per MiB |\n", conns, streams, m["sluice"], m["haproxy"], m["sluice"] / m["haproxy"], t["sluice"] / hz / q["sluice"] * 1e3, t["haproxy"] / hz / q["haproxy"] * 1e3
    }' "$RUN/rounds.txt"
done
} | tee "$RUN/table.md"
