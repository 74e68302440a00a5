package node

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// rmemMaxFile holds the largest receive buffer setsockopt(SO_RCVBUF)
// grants; larger requests are cut to it without an error.
const rmemMaxFile = "/proc/sys/net/core/rmem_max"

// rmemMax reads rmemMaxFile; ok is false where there is none to read (not
// Linux, no procfs).
func rmemMax() (limit uint64, ok bool) {
	raw, err := os.ReadFile(rmemMaxFile)
	if err != nil {
		return 0, false
	}
	limit, err = strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 32)
	return limit, err == nil && limit > 0
}

// warnReceiveBuffers logs, in one line, the compiled clusters whose
// receive_buffer_bytes was set or changed (against running) to more than
// the kernel grants, so that an operator who sets 8 MiB on a host that
// allows 208 KiB learns why throughput stays low. Apply calls it once the
// snapshot can no longer be refused.
func warnReceiveBuffers(log *slog.Logger, compiled []*cluster, running map[string]*cluster) {
	var limit uint64 // read once, when a cluster asks for a buffer
	var over []string
	for _, c := range compiled {
		want := c.spec.GetReceiveBufferBytes()
		if want == 0 {
			continue
		}
		if prev := running[c.name]; prev != nil && prev.spec.GetReceiveBufferBytes() == want {
			continue // told when it was set
		}
		if limit == 0 {
			var ok bool
			if limit, ok = rmemMax(); !ok {
				return // nothing to compare with
			}
		}
		if uint64(want) > limit {
			over = append(over, c.name+"="+strconv.FormatUint(uint64(want), 10))
		}
	}
	if len(over) == 0 {
		return
	}
	const shown = 10
	more := ""
	if len(over) > shown {
		more = " and " + strconv.Itoa(len(over)-shown) + " more"
		over = over[:shown]
	}
	log.Warn("receive_buffer_bytes is above net.core.rmem_max: the kernel cuts it to that; raise the sysctl to get it",
		"net.core.rmem_max", limit, "clusters", strings.Join(over, " ")+more)
}
