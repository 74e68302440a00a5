# sidebyside.sh: what scripts/bench-bodies.sh and scripts/bench-h2.sh
# share, sourced by them (not run): a run directory whose daemons stop
# with the script, a control plane and a node (GOMAXPROCS=1, $NODE) in
# front of what the script started, rounds of the node and HAProxy in
# turns, and the medians of the rounds. Each script defines round, which
# runs one round and appends "CASE SIDE rate ticks responses" to
# $RUN/rounds.txt.

# sbs_init NAME: RUN is .run/NAME, emptied and absolute; on exit the
# processes in pids stop, and so does each daemon whose pid file is in
# RUN.
sbs_init() {
  RUN=.run/$1
  rm -rf "$RUN"; mkdir -p "$RUN"
  RUN=$(cd "$RUN" && pwd)
  export SLUICE_CP=127.0.0.1:19270
  pids=()
  trap sbs_cleanup EXIT
}

sbs_cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  for f in "$RUN"/*.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}

# sbs_node NODE-ID SNAPSHOT: starts a control plane and the node, each in
# its own session as scripts/bench.sh explains, and applies SNAPSHOT; dp
# is the node's pid.
sbs_node() {
  setsid bin/sluice-cp --listen $SLUICE_CP --http 127.0.0.1:19271 --data "$RUN/cp-data" >"$RUN/cp.log" 2>&1 & pids+=($!)
  GOMAXPROCS=1 setsid "$NODE" --cp $SLUICE_CP --node-id "$1" --admin 127.0.0.1:19272 --log-level warn >"$RUN/dp.log" 2>&1 & pids+=($!)
  dp=$!
  for _ in $(seq 100); do bin/sluicectl apply -f "$2" >/dev/null 2>&1 && break; sleep 0.1; done
}

# cputime PID: the CPU time PID has spent, user and system, in clock ticks.
cputime() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hz=$(getconf CLK_TCK)

# sbs_pairs CASE NODE-PORT HAPROXY-PORT [ARG...]: ROUNDS rounds of each
# side (round CASE SIDE PORT PID ARG...), in turns, the side that goes
# first alternating. HAProxy's pid is hap.
sbs_pairs() {
  local name=$1 np=$2 hp=$3 r
  shift 3
  echo "== $name" >&2
  for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then
      round "$name" sluice "$np" "$dp" "$@"; round "$name" haproxy "$hp" "$hap" "$@"
    else
      round "$name" haproxy "$hp" "$hap" "$@"; round "$name" sluice "$np" "$dp" "$@"
    fi
  done
}

# sbs_medians is the start of an awk program over $RUN/rounds.txt, with
# -v name=CASE: its END calls medians(), after which m[SIDE] is the
# median rate of SIDE's rounds, t[SIDE] its ticks and q[SIDE] its
# responses.
sbs_medians='
function median(a, n,   i, j, x) {
  for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { x = a[j]; a[j] = a[j-1]; a[j-1] = x }
  return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
function medians(   s, i) {
  for (s in n) { delete a; for (i = 1; i <= n[s]; i++) a[i] = r[s, i]; m[s] = median(a, n[s]) }
}
$1 == name { n[$2]++; r[$2, n[$2]] = $3; t[$2] += $4; q[$2] += $5 }
'
