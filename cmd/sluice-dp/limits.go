package main

import (
	"fmt"
	"syscall"
)

// fileReserve is the open files --max-connections leaves to the node's own
// work when it derives the cap: the control plane's streams, the admin
// address, health checks, logs and the listening sockets.
const fileReserve = 100

// fileLimit is the process's open-file limit: RLIMIT_NOFILE's soft limit,
// which Go raises to the hard one as the process starts. 0 when unknown.
func fileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 0
	}
	return int(lim.Cur)
}

// connectionCap is the node's cap on client connections over all its
// listeners: asked, when --max-connections gives one, else derived from
// the open-file limit (files) as HAProxy derives its global maxconn: each
// proxied connection holds two files, the client's and the endpoint's, and
// fileReserve are kept for the rest. warn says why asked may be too many
// for files ("" when it is not); derived caps are 0 when files is unknown.
func connectionCap(asked, files int) (limit int, warn string) {
	if files <= 0 {
		return asked, ""
	}
	fit := max(1, (files-fileReserve)/2)
	if asked == 0 {
		return fit, ""
	}
	if asked > fit {
		warn = fmt.Sprintf("--max-connections %d is more than the open-file limit of %d lets the node proxy (%d: two files each, the client's and the endpoint's, and %d for the node); past it, accepts and connects to endpoints fail with 'too many open files': raise the limit (ulimit -n, systemd's LimitNOFILE=)",
			asked, files, fit, fileReserve)
	}
	return asked, warn
}
