package node

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// rmemMaxFile holds the largest receive buffer an unprivileged setsockopt
// gets; larger requests are cut to it without an error.
const rmemMaxFile = "/proc/sys/net/core/rmem_max"

// warnReceiveBuffer logs once per change when a cluster asks for a
// receive_buffer_bytes larger than the kernel grants, so that an operator
// who sets 8 MiB on a host that allows 208 KiB learns why throughput
// stays low.
func warnReceiveBuffer(log *slog.Logger, name string, want, before uint32) {
	if want == 0 || want == before {
		return
	}
	raw, err := os.ReadFile(rmemMaxFile)
	if err != nil {
		return // not Linux, or no procfs: nothing to tell
	}
	limit, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 32)
	if err != nil || uint64(want) <= limit {
		return
	}
	log.Warn("receive_buffer_bytes is above net.core.rmem_max: the kernel cuts it; raise the sysctl to get it",
		"cluster", name, "receive_buffer_bytes", want, "net.core.rmem_max", limit)
}
