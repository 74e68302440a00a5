#!/usr/bin/env bash
# make bench: Sluice side by side with HAProxy, nginx and Caddy, using
# ../shared/bench/peers.sh. The node runs with GOMAXPROCS=1 because every peer
# gets one thread. Knobs are peers.sh's: ROUNDS, DURATION, CONNS.
set -euo pipefail
cd "$(dirname "$0")/.."
peers=${PEERS:-../shared/bench/peers.sh}
[ -x "$peers" ] || peers="bash $peers"
RUN=.run/bench
rm -rf "$RUN"; mkdir -p "$RUN"
export SLUICE_CP=127.0.0.1:19270

pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  $peers stop || true
}
trap cleanup EXIT

$peers start
bin/sluice-cp --listen $SLUICE_CP --http 127.0.0.1:19271 --data "$RUN/cp-data" >"$RUN/cp.log" 2>&1 & pids+=($!)
GOMAXPROCS=1 bin/sluice-dp --cp $SLUICE_CP --node-id bench --admin 127.0.0.1:19272 --log-level warn >"$RUN/dp.log" 2>&1 & pids+=($!)
dp=$!
for _ in $(seq 100); do bin/sluicectl apply -f examples/bench.yaml >/dev/null 2>&1 && break; sleep 0.1; done
for _ in $(seq 100); do curl -fsS http://127.0.0.1:19280/ >/dev/null 2>&1 && curl -fsS http://127.0.0.1:19281/ >/dev/null 2>&1 && break; sleep 0.1; done

$peers run l7 sluice=http://127.0.0.1:19280/ | tee "$RUN/l7.txt"
$peers run l4 sluice=http://127.0.0.1:19281/ | tee "$RUN/l4.txt"
if [ -n "${BENCH_MEM:-}" ]; then
  $peers mem "sluice-l7=19280:$dp" "sluice-l4=19281:$dp" | tee "$RUN/mem.txt"
fi
echo
echo "== summary (ratios to HAProxy from the same run)"
grep -A10 -- '--- l7' "$RUN/l7.txt"
grep -A10 -- '--- l4' "$RUN/l4.txt"
