package node

import (
	"bytes"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestWarnReceiveBuffer: a receive_buffer_bytes above net.core.rmem_max is
// logged when it is set or changed, and nothing else is.
func TestWarnReceiveBuffer(t *testing.T) {
	raw, err := os.ReadFile(rmemMaxFile)
	if err != nil {
		t.Skipf("no %s: %v", rmemMaxFile, err)
	}
	limit, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	const big = 64 << 20
	if limit >= big {
		t.Skipf("net.core.rmem_max is %d here: no receive_buffer_bytes is above it", limit)
	}
	for _, tc := range []struct {
		want, before uint32
		warns        bool
	}{
		{big, 0, true},
		{big, big / 2, true},
		{big, big, false}, // logged when it was set
		{4096, 0, false},
		{0, big, false},
	} {
		var buf bytes.Buffer
		warnReceiveBuffer(slog.New(slog.NewTextHandler(&buf, nil)), "web", tc.want, tc.before)
		out := buf.String()
		if got := strings.Contains(out, "above net.core.rmem_max"); got != tc.warns {
			t.Errorf("receive_buffer_bytes %d after %d: logged %q, want a warning: %t", tc.want, tc.before, out, tc.warns)
		}
		if tc.warns && !strings.Contains(out, "net.core.rmem_max="+strconv.FormatUint(limit, 10)) {
			t.Errorf("the warning %q does not name the limit %d", out, limit)
		}
	}
}
