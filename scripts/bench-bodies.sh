#!/usr/bin/env bash
# make bench-bodies: 1 MiB HTTP bodies the way `make bench` does not send
# them, Sluice side by side with HAProxy: uploads with a declared length,
# chunked uploads, and chunked downloads. `make bench`'s L7 1 MiB row is a
# download with a declared length.
#
# An nginx takes the uploads (and discards them, answering "ok"); another
# serves a 1 MiB file chunked (sub_filter drops its length; it matches
# nothing). One HAProxy (nbthread 1) and the node (GOMAXPROCS=1) stand in
# front of both, on loopback. Each round runs `wrk -t1 -c$CONNS` for
# DURATION against either side, in turns, the first side alternating; the
# table gives each side's median MiB/s, their ratio and the CPU time each
# spent per MiB over its rounds (from /proc/PID/stat).
#
# Knobs: ROUNDS (4), DURATION (6s), CONNS (10); NODE, the sluice-dp to
# run (bin/sluice-dp), to compare builds. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-4} DURATION=${DURATION:-6s} CONNS=${CONNS:-10} NODE=${NODE:-bin/sluice-dp}
[[ $DURATION =~ ^[0-9]+s$ ]] || { echo "bench-bodies: DURATION=$DURATION: a whole number of s, as 6s" >&2; exit 2; }
for cmd in nginx haproxy wrk; do
  command -v $cmd >/dev/null || { echo "bench-bodies: needs $cmd (apt-get install nginx haproxy wrk)" >&2; exit 1; }
done
. scripts/sidebyside.sh
sbs_init bench-bodies

head -c 1048576 /dev/urandom >"$RUN/big.bin"
nginxconf() { # NAME SERVER-BLOCK
  cat >"$RUN/$1.conf" <<CONF
worker_processes 1;
daemon on;
pid $RUN/$1.pid;
error_log $RUN/$1.err;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_max_body_size 4m;
  client_body_buffer_size 2m;
  $2
}
CONF
  nginx -c "$RUN/$1.conf"
}
nginxconf sink 'server { listen 127.0.0.1:19104; location / { return 200 "ok\n"; } }'
nginxconf source "server { listen 127.0.0.1:19105; root $RUN; location / { sub_filter 'nothing-matches-this' ''; sub_filter_types *; sub_filter_once off; try_files /big.bin =404; } }"

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
listen up
  bind 127.0.0.1:19185
  server sink 127.0.0.1:19104
listen down
  bind 127.0.0.1:19186
  server source 127.0.0.1:19105
CONF
haproxy -f "$RUN/haproxy.cfg"

sbs_node bench-bodies examples/bench-bodies.yaml
for port in 19285 19286 19185 19186; do
  ok=
  for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && ok=1 && break; sleep 0.1; done
  [ -n "$ok" ] || { echo "bench-bodies: nothing answers on 127.0.0.1:$port" >&2; exit 1; }
done
hap=$(cat "$RUN/haproxy.pid")

# The requests, as wrk scripts: 1 MiB with a Content-Length, and 1 MiB in
# 64 chunks of 16 KiB (a raw request: wrk would add a Content-Length).
cat >"$RUN/length.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 1048576)
LUA
cat >"$RUN/chunked.lua" <<'LUA'
local chunk = string.format("%x\r\n", 16384) .. string.rep("x", 16384) .. "\r\n"
local req = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" .. string.rep(chunk, 64) .. "0\r\n\r\n"
request = function() return req end
LUA

# round CASE SIDE PORT PID [SCRIPT]: one wrk run; appends "CASE SIDE MiB/s
# ticks responses" to $RUN/rounds.txt. A run with errors or non-2xx
# answers stops the bench: its figure would not be a transfer rate.
round() {
  local c0 out c1
  c0=$(cputime "$4")
  out=$(wrk -t1 -c"$CONNS" -d"$DURATION" ${5:+-s "$RUN/$5"} "http://127.0.0.1:$3/" 2>&1)
  c1=$(cputime "$4")
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "bench-bodies: $1 through $2 failed:" >&2; echo "$out" >&2; exit 1
  fi
  echo "$1 $2 $(awk '/Requests\/sec/{print $2}' <<<"$out") $((c1 - c0)) $(awk '/requests in/{print $1}' <<<"$out")" >>"$RUN/rounds.txt"
}
cases=("upload,-length 19285 19185 length.lua" "upload,-chunked 19285 19185 chunked.lua" "download,-chunked 19286 19186")
for c in "${cases[@]}"; do
  sbs_pairs $c
done

# The table: medians of each side's rounds (1 MiB per response, so
# responses/s is MiB/s), the ratio of the medians, CPU per MiB.
{
echo "| 1 MiB bodies ($CONNS connections, $ROUNDS rounds of $DURATION) | Sluice | HAProxy | ratio | CPU per MiB, Sluice / HAProxy |"
echo "|---|---|---|---|---|"
for c in "${cases[@]}"; do
  read -r name _ <<<"$c"
  awk -v name="$name" -v hz="$hz" "$sbs_medians"'
    END {
      medians()
      gsub(/,-/, ", ", name)
      printf "| %s | %.0f MiB/s | %.0f MiB/s | %.2f× | %.2f / %.2f ms |\n", name, m["sluice"], m["haproxy"], m["sluice"] / m["haproxy"], t["sluice"] / hz / q["sluice"] * 1e3, t["haproxy"] / hz / q["haproxy"] * 1e3
    }' "$RUN/rounds.txt"
done
} | tee "$RUN/table.md"
