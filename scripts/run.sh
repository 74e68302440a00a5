#!/usr/bin/env bash
# make run: a control plane on its embedded store, one dataplane node and
# three demo backends on loopback, with examples/quickstart.yaml applied.
# Every run starts from an empty store, as the README's tour expects. A
# backend may be stopped (kill PID) to watch the node take it out; Ctrl-C,
# or the control plane or node exiting, stops everything this script
# started.
set -euo pipefail
cd "$(dirname "$0")/.."

CP=127.0.0.1:7070
CP_HTTP=127.0.0.1:7071
ADMIN=127.0.0.1:7072
RUN=.run
mkdir -p "$RUN"
export SLUICE_CP=$CP

pids=()
declare -A name_of # pid: what it is
start() { # start NAME CMD...: CMD in the background, its output in $RUN/NAME.log
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  pids+=($!)
  name_of[$!]=$name
}
dp_pid=
cleanup() {
  trap - EXIT
  ((${#pids[@]})) || return 0 # nothing started, nothing to stop
  echo
  echo "stopping... (connections in progress may finish first; Ctrl-C again stops at once)"
  # The node first, while the control plane still runs to hear that it
  # drains and to take its last connection records: the two run in
  # sessions of their own, so that Ctrl-C reaches neither before this.
  # The node drains for as long as connections in progress need, up to
  # its --drain-grace; a second Ctrl-C is its second signal, on which it
  # exits at once.
  if [[ -n $dp_pid ]]; then
    trap 'kill "$dp_pid" 2>/dev/null || true' INT TERM HUP
    kill "$dp_pid" 2>/dev/null || true
    while kill -0 "$dp_pid" 2>/dev/null; do wait "$dp_pid" 2>/dev/null || true; done
  fi
  trap '' INT TERM HUP
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
# A stop asked for is no failure: exiting 0 spares a Ctrl-C the
# "make: *** [run] Error 130" that would follow it (make, which got the
# same Ctrl-C, stops quietly).
trap 'exit 0' INT TERM HUP

port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for addr in $CP $CP_HTTP $ADMIN 127.0.0.1:9001 127.0.0.1:9002 127.0.0.1:9009 127.0.0.1:8080 127.0.0.1:6663; do
  port_free "$addr" || { echo "make run: $addr is already in use; stop what holds it (an earlier 'make run'?)" >&2; exit 1; }
done

wait_for() { # wait_for WHAT CMD...: retry CMD for up to 10s
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "make run: $what did not come up; see $RUN/*.log" >&2; exit 1
}

start web1 bin/demo-backend --listen 127.0.0.1:9001 --name web1
start web2 bin/demo-backend --listen 127.0.0.1:9002 --name web2
start sorry bin/demo-backend --listen 127.0.0.1:9009 --name sorry

rm -rf "$RUN/cp-data" # versions start at 1, as in the README
start cp setsid bin/sluice-cp --listen $CP --http $CP_HTTP --data "$RUN/cp-data"
wait_for "sluice-cp" curl -fsS "http://$CP_HTTP/healthz"

start dp setsid bin/sluice-dp --cp $CP --node-id node-1 --labels zone=local --admin $ADMIN
dp_pid=$!
wait_for "sluice-dp" curl -fsS "http://$ADMIN/healthz"

bin/sluicectl apply -f examples/quickstart.yaml
wait_for "the HTTP listener" curl -fsS http://127.0.0.1:8080/

cat <<TXT

Sluice is running (logs in $RUN/):
  control plane   gRPC $CP   dashboard http://$CP_HTTP/
  node-1          status page http://$ADMIN/   (JSON: /status, Prometheus: /metrics)
  HTTP listener   http://127.0.0.1:8080/   -> cluster web (web1 weight 2, web2 weight 1)
  TCP listener    127.0.0.1:6663           -> the same cluster, one backend per connection
  backends        web1 :9001 (pid ${pids[0]}), web2 :9002 (pid ${pids[1]}), sorry :9009 (pid ${pids[2]}, the backup)

Try, in another terminal:
  for i in 1 2 3 4 5 6; do curl -s http://127.0.0.1:8080/; done
  curl -s http://127.0.0.1:6663/
  export SLUICE_CP=$CP
  bin/sluicectl nodes
  bin/sluicectl conns
  bin/sluicectl set-weight web/web2 2     # a runtime change, as a new version
  edit examples/quickstart.yaml, then: bin/sluicectl apply -f examples/quickstart.yaml

Stop a backend with kill PID: the node's health checks take it out.
Ctrl-C stops everything.
TXT
while :; do
  status=0 exited=
  wait -n -p exited || status=$?
  name=${name_of[$exited]:-}
  if [[ $name == web1 || $name == web2 || $name == sorry ]]; then
    echo "make run: backend $name (pid $exited) exited (status $status); the rest runs on" >&2
    continue
  fi
  echo "make run: ${name:-a process} (pid ${exited:-?}) exited (status $status); see $RUN/${name:-*}.log" >&2
  exit 1
done
