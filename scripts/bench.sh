#!/usr/bin/env bash
# make bench: issue 8's targets, Sluice side by side with HAProxy in one run,
# printed as one table (and kept in .run/bench/table.md): each side's median
# over the rounds, their ratio, and the ratio in each round, since one
# machine's rounds differ by up to a quarter; and the CPU time each side
# spent per request (per MiB on the 1 MiB rows) over its rounds, which a
# round that the machine's other load slowed changes much less than it
# changes req/s. The "machine" column says how much of the CPUs the
# hypervisor took during each row's rounds of either side (steal time);
# a round where that was enough that it may have moved its ratio gets a
# "*", and its row is marked "disturbed".
#
# ../shared/bench/peers.sh starts the peers (HAProxy, nginx and Caddy, one
# thread each) and two nginx backends; this script adds what peers.sh does
# not have: a third nginx backend serving a 1 MiB file, and a second HAProxy
# with the rules listener (the same 20 rules and X-Forwarded-For as
# examples/bench.yaml's l7-rules) and the 1 MiB listeners. The node runs
# with GOMAXPROCS=1, because every peer gets one thread.
#
# Knobs: ROUNDS (5), DURATION (8s, in s or m), CONNS (50), passed on to
# peers.sh; BIG_CONNS (10) for the 1 MiB rows; RERUNS (1), how many more
# times a row with fewer than half its rounds quiet is run (see tries);
# BENCH_MEM=0 skips the idle-memory rows. Five rounds, not peers.sh's
# three, because one round with a stall (a 15-18 ms p99, on either side)
# otherwise decides a median.
# The figures of the 100k-idle and 10k-cluster apply targets come from
# `make bench-scale`.
set -euo pipefail
cd "$(dirname "$0")/.."
peers=${PEERS:-../shared/bench/peers.sh}
export ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-8s} CONNS=${CONNS:-50}
BIG_CONNS=${BIG_CONNS:-10} RERUNS=${RERUNS:-1}
# The rounds' length in seconds, for the CPU column: a whole number of s
# or m, as wrk takes it.
[[ $DURATION =~ ^[0-9]+[sm]$ ]] || { echo "bench: DURATION=$DURATION: a whole number of s or m, as 8s or 1m" >&2; exit 2; }
seconds=$((10#${DURATION%[sm]}))
[[ $DURATION == *m ]] && seconds=$((seconds * 60))
RUN=.run/bench
rm -rf "$RUN"; mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)
export SLUICE_CP=127.0.0.1:19270

pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  [ -f "$RUN/haproxy.pid" ] && kill "$(cat "$RUN/haproxy.pid")" 2>/dev/null || true
  [ -f "$RUN/big.pid" ] && kill "$(cat "$RUN/big.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  bash "$peers" stop || true
}
trap cleanup EXIT

bash "$peers" start

# The 1 MiB backend, and HAProxy's rules and large-body listeners.
head -c 1048576 /dev/urandom >"$RUN/big.bin"
cat >"$RUN/big.conf" <<CONF
worker_processes 1;
daemon on;
pid $RUN/big.pid;
error_log $RUN/big.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:19103; root $RUN; location / { try_files /big.bin =404; } }
}
CONF
nginx -c "$RUN/big.conf"
{
  cat <<CONF
global
  nbthread 1
  maxconn 8000
  pidfile $RUN/haproxy.pid
  daemon
defaults
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend l7rules
  mode http
  bind 127.0.0.1:19182
  option forwardfor
CONF
  for i in 1 2 3 4 5; do echo "  http-request deny if { src 192.0.$i.0/24 }"; done
  for i in 1 2 3 4 5; do echo "  http-request deny if { hdr_sub(user-agent) -i bot$i }"; done
  for i in 1 2 3 4 5; do echo "  http-request deny if { hdr_end(host) -i .legacy$i.com }"; done
  for i in 1 2 3 4 5; do echo "  use_backend other if { path_beg /svc$i/ }"; done
  cat <<CONF
  default_backend be7
backend be7
  mode http
  balance roundrobin
  server s1 127.0.0.1:19101
  server s2 127.0.0.1:19102
backend other
  mode http
  server o1 127.0.0.1:19101
frontend l7big
  mode http
  bind 127.0.0.1:19183
  default_backend big
backend big
  mode http
  server big1 127.0.0.1:19103
listen l4big
  mode tcp
  bind 127.0.0.1:19184
  server big1 127.0.0.1:19103
CONF
} >"$RUN/haproxy.cfg"
haproxy -f "$RUN/haproxy.cfg"

# Each process in its own session, as the daemons HAProxy and nginx are and
# as peers.sh starts Caddy: with the kernel's autogroup scheduling, a
# session is one entity sharing the CPU, so a node left in this script's
# session would share one fair share of the CPU with wrk.
setsid bin/sluice-cp --listen $SLUICE_CP --http 127.0.0.1:19271 --data "$RUN/cp-data" >"$RUN/cp.log" 2>&1 & pids+=($!)
GOMAXPROCS=1 setsid bin/sluice-dp --cp $SLUICE_CP --node-id bench --admin 127.0.0.1:19272 --log-level warn >"$RUN/dp.log" 2>&1 & pids+=($!)
dp=$!
for _ in $(seq 100); do bin/sluicectl apply -f examples/bench.yaml >/dev/null 2>&1 && break; sleep 0.1; done
for port in 19280 19281 19282 19283 19284 19182 19183 19184; do
  ok=
  for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && ok=1 && break; sleep 0.1; done
  [ -n "$ok" ] || { echo "bench: nothing answers on 127.0.0.1:$port" >&2; exit 1; }
done

# cputime PID: the CPU time PID has spent, user and system, in clock
# ticks (the fields after the command's name, which ends in ")").
cputime() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# measured NAME HAPROXY_PID COMMAND...: runs COMMAND, and appends to
# $RUN/cpu.txt the CPU time the node and that HAProxy spent meanwhile,
# as "NAME who ticks". Each serves nothing but its own rounds then.
measured() {
  local name=$1 hp=$2 s0 h0
  shift 2
  s0=$(cputime "$dp") h0=$(cputime "$hp")
  "$@"
  echo "$name sluice $(($(cputime "$dp") - s0))" >>"$RUN/cpu.txt"
  echo "$name haproxy $(($(cputime "$hp") - h0))" >>"$RUN/cpu.txt"
}
# On a virtual machine the hypervisor may run something else on the
# CPUs this machine wants: the steal time of /proc/stat. A round it hit
# is slower on whichever side it ran. stat.txt gets the first line of
# /proc/stat every second, after the time ("SECONDS cpu user nice system
# idle iowait irq softirq steal ..."), until this script ends.
sample_stat() {
  local line
  while sleep 1 && kill -0 $$ 2>/dev/null; do
    read -r line </proc/stat
    printf '%(%s)T %s\n' -1 "$line"
  done
}
sample_stat >"$RUN/stat.txt" & pids+=($!)
# slot NAME WHO: notes in $RUN/slots.txt that a round of WHO (sluice or
# haproxy) in row NAME has just ended, as "NAME WHO SECONDS".
slot() { printf '%s %s %(%s)T\n' "$1" "$2" -1 >>"$RUN/slots.txt"; }
# slots NAME: passes peers.sh's output on, noting the slot of each round
# of Sluice or HAProxy in it: peers.sh prints a round's line as its wrk
# run ends.
slots() {
  local line
  while IFS= read -r line; do
    printf '%s\n' "$line"
    [[ $line =~ ^round\ [0-9]+\ (sluice|haproxy)\  ]] && slot "$1" "${BASH_REMATCH[1]}"
  done
  return 0
}
# steal_in: for each window "FROM TO KEY..." on stdin (seconds, as the
# samples of stat.txt are stamped), "KEY... STOLEN ALL": the ticks of the
# CPUs the hypervisor took (steal) in the samples that ended in (FROM, TO],
# and all the ticks of those samples. A window with no sample in it is
# left out; nothing if nothing was sampled.
steal_in() {
  [ -s "$RUN/stat.txt" ] || return 0
  awk '
    FILENAME == ARGV[1] { k++; from[k] = $1; to[k] = $2; $1 = $2 = ""; key[k] = substr($0, 3); next }
    $2 == "cpu" {
      t = 0; for (i = 3; i <= 10; i++) t += $i # user to steal
      if (pt > 0 && t > pt)
        for (r = 1; r <= k; r++)
          if ($1 > from[r] && $1 <= to[r]) { d[r] += $10 - ps; a[r] += t - pt }
      ps = $10; pt = t
    }
    END { for (r = 1; r <= k; r++) if (a[r] > 0) print key[r], d[r], a[r] }
  ' /dev/stdin "$RUN/stat.txt" || true
}
# slot_steal NAME: for each round of Sluice or HAProxy in row NAME, "WHO
# ROUND STOLEN ALL" (steal_in) over the $seconds before the round ended
# (its end in slots.txt).
slot_steal() {
  [ -s "$RUN/slots.txt" ] || return 0
  awk -v n="$1" -v w="$seconds" '$1 == n { printf "%d %d %s %d\n", $3 - w, $3, $2, ++rounds[$2] }' "$RUN/slots.txt" | steal_in
}
# A round in which the hypervisor took steal_limit percent of the CPUs or
# more, on either side, is disturbed: enough that it may have moved the
# round's ratio by as much, and the ratios' margins to their goals are
# often a few percent. The p99 can move with less: a stolen CPU stalls
# every request in flight on it, for milliseconds.
steal_limit=1
# disturbed_rounds NAME: 1 or 0 for each round of row NAME, one a line.
disturbed_rounds() {
  slot_steal "$1" | awk -v lim="$steal_limit" '
    { if ($2 > n) n = $2; if (100 * $3 >= lim * $4) bad[$2] = 1 }
    END { for (r = 1; r <= n; r++) print bad[r] + 0 }'
}
peers_hp=$(cat "${PEERS_DIR:-/tmp/sluice-peers}/haproxy.pid")
bench_hp=$(cat "$RUN/haproxy.pid")

# tries NAME RUN ARGS...: runs row NAME as "RUN NAME ARGS...", then again,
# as NAME.2 and on, while fewer than half the rounds of its last run were
# quiet (disturbed_rounds), up to RERUNS more times. Each run is noted in
# $RUN/NAME.tries as "RUN_NAME QUIET ROUNDS"; $RUN/NAME.kept names the one
# with the most quiet rounds (of equals, the one with the least steal over
# its rounds), which the table shows. The choice goes by the steal the
# rounds met, never by their figures.
tries() {
  local name=$1 run=$2 try n q r st best= bestq=-1 bestst=0
  shift 2
  for ((try = 1; try <= RERUNS + 1; try++)); do
    n=$name
    if ((try > 1)); then n=$name.$try; fi
    "$run" "$n" "$@"
    sleep 2 # for the sampler's line of the last round's end
    read -r q r < <(disturbed_rounds "$n" | awk '{ n++; if ($1 == 0) q++ } END { print q + 0, n + 0 }')
    # The steal over all its rounds, in thousandths of a percent.
    st=$(slot_steal "$n" | awk '{ s += $3; a += $4 } END { printf "%d", (a > 0 ? 100000 * s / a : 0) }')
    echo "$n $q $r" >>"$RUN/$name.tries"
    if ((q > bestq || (q == bestq && st < bestst))); then best=$n bestq=$q bestst=$st; fi
    if ((2 * q >= r)); then break; fi # r is 0 when steal was not sampled
    if ((try <= RERUNS)); then echo "bench: $n: $q of $r rounds quiet; running the row again" >&2; fi
  done
  echo "$best" >"$RUN/$name.kept"
}
# kept NAME: the run of row NAME the table shows (tries).
kept() { cat "$RUN/$1.kept" 2>/dev/null || echo "$1"; }

# The standard rows: peers.sh's own runs, whose output is kept as is.
# peers_row NAME MODE URL: peers.sh's MODE row, with Sluice at URL.
peers_row() {
  measured "$1" "$peers_hp" bash "$peers" run "$2" sluice="$3" | slots "$1" | tee "$RUN/$1.txt"
}
tries l7 peers_row l7 http://127.0.0.1:19280/
tries l4 peers_row l4 http://127.0.0.1:19281/

# wrk1 CONNS URL: one wrk run, printing "req/s p99 bytes/s".
wrk1() {
  local out
  out=$(wrk -t1 -c"$1" -d"$DURATION" --latency "$2" 2>&1)
  awk '/Requests\/sec/{r=$2} $1=="99%"{p=$2} /Transfer\/sec/{t=$2} END{print r, p, t}' <<<"$out"
}
# pair NAME CONNS URL_HAPROXY URL_SLUICE: ROUNDS interleaved rounds of both,
# appended to $RUN/pairs.txt as "NAME who round req/s p99 bytes/s".
pair() {
  local name=$1 conns=$2 h=$3 s=$4
  for ((r = 1; r <= ROUNDS; r++)); do
    for who in haproxy sluice; do
      local url=$h
      [ $who = sluice ] && url=$s
      read -r rps p99 tput <<<"$(wrk1 "$conns" "$url")"
      slot "$name" "$who"
      echo "$name $who $r $rps $p99 $tput" | tee -a "$RUN/pairs.txt"
    done
  done
}
# pair_row NAME CONNS URL_HAPROXY URL_SLUICE: pair, measured.
pair_row() { measured "$1" "$bench_hp" pair "$@"; }
tries rules pair_row "$CONNS" http://127.0.0.1:19182/ http://127.0.0.1:19282/
tries l7big pair_row "$BIG_CONNS" http://127.0.0.1:19183/ http://127.0.0.1:19283/
tries l4big pair_row "$BIG_CONNS" http://127.0.0.1:19184/ http://127.0.0.1:19284/

# freshnode PORT: a new node process (its pid in $dp), with the snapshot
# applied, warmed like the peers are by the throughput rows (a short wrk on
# PORT), so that each memory row starts from the same state: in one
# process, what one row's connections freed would be reused by (or given
# back to the OS during) the next.
freshnode() {
  kill "$dp" 2>/dev/null || true
  wait "$dp" 2>/dev/null || true
  GOMAXPROCS=1 setsid bin/sluice-dp --cp $SLUICE_CP --node-id bench --admin 127.0.0.1:19272 --log-level warn >>"$RUN/dp.log" 2>&1 & pids+=($!)
  dp=$!
  for port in 19280 19281; do
    local ok=
    for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && ok=1 && break; sleep 0.1; done
    [ -n "$ok" ] || { echo "bench: the new node does not answer on 127.0.0.1:$port" >&2; exit 1; }
  done
  wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$1/" >/dev/null
  sleep 1
}
# spanned NAME COMMAND...: runs COMMAND, noting in $RUN/spans.txt when it
# started and ended, as "NAME START END" (seconds), for span_machine.
spanned() {
  local name=$1 t0
  shift
  t0=$(printf '%(%s)T' -1)
  "$@"
  printf '%s %s %(%s)T\n' "$name" "$t0" -1 >>"$RUN/spans.txt"
}
if [ "${BENCH_MEM:-1}" != 0 ]; then
  freshnode 19280
  spanned mem-l7 bash "$peers" mem "sluice-l7=19280:$dp" | tee "$RUN/mem-l7.txt"
  freshnode 19281
  spanned mem-l4 bash "$peers" mem "sluice-l4=19281:$dp" | tee "$RUN/mem-l4.txt"
fi

# The table. Medians over the rounds; throughput of the 1 MiB rows in MiB/s
# (wrk counts in powers of 1024).
median() { sort -g | awk 'NF {a[++n]=$1} END{if (n) print a[int((n+1)/2)]; else print "nan"}'; }
ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}'; }
mbs() { awk '{v=$1; if (v ~ /GB$/) {sub(/GB$/,"",v); v*=1024} else if (v ~ /MB$/) {sub(/MB$/,"",v)} else if (v ~ /KB$/) {sub(/KB$/,"",v); v/=1024}; print v}'; }
peer_rounds() { # FILE FIELD WHO: the values of WHO's rounds in a peers.sh output
  grep "^round [0-9]* $3 " "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"
}
pair_rounds() { # NAME COLUMN WHO: the values of WHO's rounds of pair NAME
  awk -v n="$1" -v c="$2" -v w="$3" '$1==n && $2==w {print $c}' "$RUN/pairs.txt"
}
# ratios SLUICE_ROUNDS HAPROXY_ROUNDS [DISTURBED_ROUNDS]: Sluice's figure
# over HAProxy's, round by round (one figure a line in each list); a
# round marked 1 in DISTURBED_ROUNDS gets a "*".
ratios() {
  paste <(echo "$1") <(echo "$2") <(echo "${3:-}") |
    awk -F'\t' '{printf "%s%s%s", (NR > 1 ? ", " : ""), ($1 + 0 > 0 && $2 + 0 > 0) ? sprintf("%.2f", $1 / $2) : "–", ($3 == 1 ? "*" : "")}'
}
# row TARGET SLUICE HAPROXY UNIT GOAL(min-ratio|max-ratio) GOALTEXT ROUNDS
# CPU MACHINE: one line of the table; MACHINE is what machine prints, or
# "–".
row() {
  awk -v t="$1" -v s="$2" -v h="$3" -v u="$4" -v g="$5" -v gt="$6" -v rr="$7" -v c="$8" -v m="$9" 'BEGIN{
    split(m, mm, "\t"); m = mm[1]; d = (mm[2] == 1) ? ", disturbed" : ""
    if (s !~ /^[0-9.]+$/ || h !~ /^[0-9.]+$/ || s + 0 <= 0 || h + 0 <= 0) {
      # A figure is missing (a run failed, nothing parsed) or not positive:
      # no ratio, and certainly no "met".
      printf "| %s | %s | %s | – | %s | %s | %s | %s | not measured |\n", t, s, h, rr, c, m, gt
      exit
    }
    r = s / h
    ok = (g ~ /^max/) ? (r <= substr(g, 4) + 0) : (r >= substr(g, 4) + 0)
    f = (u == "ms" || u == "KiB") ? "%.2f" : "%.0f"
    printf "| %s | " f " %s | " f " %s | %.2f× | %s | %s | %s | %s | %s%s |\n", t, s, u, h, u, r, rr, c, m, gt, ok ? "met" : "not met", d
  }'
}
# machine NAME: how the machine behaved during the rounds of Sluice and
# HAProxy in row NAME, as "TEXT<tab>DISTURBED". TEXT gives the share of
# the CPUs the hypervisor took (steal) over those rounds and in the worst
# of them, and the rounds that were not disturbed; for a row of
# peers.sh's (its output in $RUN/NAME.txt: the L7, p99 and L4 rows), also
# the range of wrk's rate straight to a backend, which no proxy's cost
# touches. DISTURBED is 1 if any round was. Missing samples are said, not
# fatal.
machine() {
  local st all worst quiet rounds lo= hi= text="steal not sampled"
  st=$(slot_steal "$1" | awk '{ s += $3; all += $4; if ($3 / $4 > worst) worst = $3 / $4 }
    END { if (all > 0) printf "%.1f %.1f", 100 * s / all, 100 * worst }')
  read -r all worst <<<"$st"
  read -r quiet rounds < <(disturbed_rounds "$1" | awk '{ n++; if ($1 == 0) q++ } END { print q + 0, n + 0 }')
  [ -n "$all" ] && text="steal $all%, worst round $worst%, $quiet of $rounds rounds quiet"
  if [ -f "$RUN/$1.txt" ]; then
    read -r lo hi < <(peer_rounds "$RUN/$1.txt" rps direct | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo, hi}')
    [ -n "$lo" ] && text+="; direct $(awk -v l="$lo" -v h="$hi" 'BEGIN{printf "%.0fk–%.0fk", l / 1000, h / 1000}')"
  fi
  local runs=$RUN/${1%.*}.tries
  if [ -f "$runs" ] && [ "$(wc -l <"$runs")" -gt 1 ]; then
    text+="; run $(awk -v n="$1" '$1 == n { print NR }' "$runs") of $(wc -l <"$runs") kept"
    text+=" (quiet rounds $(awk '{ printf "%s%d/%d", (NR > 1 ? ", " : ""), $2, $3 }' "$runs"))"
  fi
  printf '%s\t%s\n' "$text" "$((quiet < rounds))"
}
# span_machine NAME: machine's "TEXT<tab>DISTURBED" for the span NAME of
# spans.txt (a memory row's trial, HAProxy's and Sluice's connections in
# turn): the share of the CPUs the hypervisor took over it. A trial under
# steal measures more than its connections: a node slowed while 5000
# clients connect and send still holds what it has not yet given back
# (2.69 KiB per idle L7 connection once, in a run of 2-16% steal, and
# 1.80-1.83 in four quiet trials just after).
span_machine() {
  local st
  [ -s "$RUN/spans.txt" ] && [ -s "$RUN/stat.txt" ] || { printf 'steal not sampled\t0\n'; return; }
  st=$(awk -v n="$1" '$1 == n { span = $2 " " $3 } END { if (span != "") print span, n }' "$RUN/spans.txt" |
    steal_in | awk '{ printf "%.1f", 100 * $2 / $3 }')
  if [ -z "$st" ]; then
    printf 'steal not sampled\t0\n'
    return
  fi
  awk -v s="$st" -v lim="$steal_limit" 'BEGIN { printf "steal %s%% over the trial\t%d\n", s, (s >= lim) }'
}
# cpu NAME WHO RATES UNIT: the CPU time WHO spent in the rounds of NAME
# (from $RUN/cpu.txt) per unit of work, in UNIT ("µs" or "ms"): the work
# is the sum of its rounds' RATES (one a line, per second) times their
# length.
cpu() {
  local ticks
  ticks=$(awk -v n="$1" -v w="$2" '$1==n && $2==w {print $3}' "$RUN/cpu.txt")
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v d="$seconds" -v u="$4" -v rates="$3" 'BEGIN{
    n = split(rates, r, "\n"); work = 0
    for (i = 1; i <= n; i++) work += r[i] * d
    if (t == "" || work <= 0) { print "–"; exit }
    printf "%.2f", t / hz * (u == "µs" ? 1e6 : 1e3) / work
  }'
}
# rounds_row TARGET CONVERT UNIT GOAL GOALTEXT CPU MACHINE ROUNDS...: the
# row of the figures that "ROUNDS... WHO" prints for each side
# (peer_rounds, or pair_rounds), each through CONVERT. CPU is "NAME PER
# UNIT", for cpu with these figures as the rates, or "–"; MACHINE is the
# NAME for machine. A side without figures (a failed run) is shown, not
# fatal: hence the "|| true" under set -e and pipefail.
rounds_row() {
  local target=$1 convert=$2 unit=$3 goal=$4 goaltext=$5 c=$6 m=$7 s h cpus=– name per cunit
  shift 7
  s=$("$@" sluice | $convert || true)
  h=$("$@" haproxy | $convert || true)
  if [ "$c" != – ]; then
    read -r name per cunit <<<"$c"
    cpus="$(cpu "$name" sluice "$s" "$cunit") / $(cpu "$name" haproxy "$h" "$cunit") $cunit per $per"
  fi
  row "$target" "$(median <<<"$s")" "$(median <<<"$h")" "$unit" "$goal" "$goaltext" \
    "$(ratios "$s" "$h" "$(disturbed_rounds "$m")")" "$cpus" "$(machine "$m")"
}
{
  echo "| target | Sluice | HAProxy | ratio | each round | CPU, Sluice / HAProxy | machine | goal | |"
  echo "|---|---|---|---|---|---|---|---|---|"
  l7=$(kept l7) l4=$(kept l4) rules=$(kept rules) l7big=$(kept l7big) l4big=$(kept l4big)
  rounds_row "L7 req/s, HTTP/1.1 keep-alive, small bodies" cat req/s min1.0 "≥ 1.0×" "$l7 request µs" "$l7" peer_rounds "$RUN/$l7.txt" rps
  rounds_row "L7 p99 latency" ms ms max1.0 "≤ 1.0×" – "$l7" peer_rounds "$RUN/$l7.txt" p99
  rounds_row "L7 req/s, 20 rules and X-Forwarded-For" cat req/s min0.9 "≥ 0.9×" "$rules request µs" "$rules" pair_rounds "$rules" 4
  rounds_row "L4 req/s through a TCP listener" cat req/s min1.0 "≥ 1.0×" "$l4 request µs" "$l4" peer_rounds "$RUN/$l4.txt" rps
  rounds_row "L7 1 MiB bodies ($BIG_CONNS connections)" mbs MiB/s min1.0 "≥ 1.0×" "$l7big MiB ms" "$l7big" pair_rounds "$l7big" 6
  rounds_row "L4 1 MiB bodies ($BIG_CONNS connections)" mbs MiB/s min1.0 "≥ 1.0×" "$l4big MiB ms" "$l4big" pair_rounds "$l4big" 6
  if [ -f "$RUN/mem-l7.txt" ]; then
    kib() { sed -n "s/^$1 .* \(-\{0,1\}[0-9.]*\) KiB per connection/\1/p" "$2"; }
    # HAProxy's figures are from the first call: peers.sh measures it on
    # every call, and by the second its process holds the memory already.
    row "memory per idle L7 keep-alive connection (5000)" \
      "$(kib sluice-l7 "$RUN/mem-l7.txt")" "$(kib haproxy-l7 "$RUN/mem-l7.txt")" "KiB" max2.0 "≤ 2.0×" "one trial" – "$(span_machine mem-l7)"
    row "memory per idle L4 session (5000)" \
      "$(kib sluice-l4 "$RUN/mem-l4.txt")" "$(kib haproxy-l4 "$RUN/mem-l7.txt")" "KiB" max2.0 "≤ 2.0×" "one trial" – "$(span_machine mem-l4)"
  fi
} >"$RUN/table.md"
echo
echo "== issue 8's targets, one run ($(nproc) cores, node at GOMAXPROCS=1; ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS)"
cat "$RUN/table.md"
if grep -q ', disturbed |$' "$RUN/table.md"; then
  echo
  echo "disturbed (and * on a round): during a round of Sluice or HAProxy, or a memory row's trial, the hypervisor"
  echo "took ${steal_limit}% or more of this machine's CPUs (steal time, /proc/stat): enough that it may have moved the"
  echo "ratio as much, and the p99 more. A row with fewer than half its rounds quiet was run again, up to RERUNS ($RERUNS)"
  echo "more times, and its run with the most quiet rounds is shown. Run again when the machine is quiet; the CPU"
  echo "column is steadier, but not immune."
fi
