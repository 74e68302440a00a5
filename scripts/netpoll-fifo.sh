#!/usr/bin/env bash
# netpoll-fifo.sh DIR: writes DIR/overlay.json, for `go build -overlay`,
# which every build and test of `make` uses.
#
# The overlay changes one line of the installed Go runtime: its epoll
# netpoller (runtime/netpoll_epoll.go) walks the events of one epoll_wait
# backwards. netpollready pushes each readied goroutine onto a stack, so
# the stock runtime runs the goroutines of one poll in the reverse of the
# order epoll reported their sockets: the socket that became ready last is
# served first. Walking the events backwards runs them in epoll's order,
# as HAProxy's event loop does. For the node that lowered the p99 latency
# of a busy listener by about 15%, with req/s within the noise
# (BENCHMARKS.md, "p99"). The order in which runnable goroutines run is
# unspecified, so no program can rely on either.
#
# Where the installed runtime lacks the expected lines (another Go
# release), the overlay replaces nothing: the build goes on with the stock
# order, and this script says so. dataplane/internal/pace's
# TestNetpollOrder fails if an overlay in place does not take effect.
set -euo pipefail

dir=${1:?usage: netpoll-fifo.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd) # go resolves the overlay's paths from its own directory
go=${GO:-go}
goroot=$("$go" env GOROOT)
src="$goroot/src/runtime/netpoll_epoll.go"
out="$dir/netpoll_epoll.go"

# write FILE: stdin to FILE through a new file beside it, so that a go
# command running meanwhile never reads half of it.
write() {
	local tmp
	tmp=$(mktemp "$1.XXXXXX")
	cat >"$tmp"
	mv "$tmp" "$1"
}

stock=$'\tfor i := int32(0); i < n; i++ {'
fifo=$'\tfor i := n - 1; i >= 0; i-- { // sluice: see scripts/netpoll-fifo.sh'

stay_stock() {
	echo "netpoll-fifo.sh: $1; building with the Go runtime's stock netpoll order" >&2
	printf '{"Replace":{}}\n' | write "$dir/overlay.json"
	exit 0
}

[ -f "$src" ] || stay_stock "no $src"
case "$src$out" in *'"'* | *\\*) stay_stock "a path holds a quote or backslash" ;; esac
[ "$(grep -cxF -- "$stock" "$src")" = 1 ] || stay_stock "$src does not have the expected loop once"
grep -qF 'toRun.push(' "$goroot/src/runtime/netpoll.go" || stay_stock "netpollready does not push onto a stack"

awk -v stock="$stock" -v fifo="$fifo" '$0 == stock { print fifo; next } { print }' "$src" | write "$out"
printf '{"Replace":{"%s":"%s"}}\n' "$src" "$out" | write "$dir/overlay.json"
