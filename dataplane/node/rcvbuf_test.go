package node

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestWarnReceiveBuffers: clusters whose receive_buffer_bytes was set or
// changed to more than net.core.rmem_max are logged, in one line, and
// nothing else is.
func TestWarnReceiveBuffers(t *testing.T) {
	limit, ok := rmemMax()
	if !ok {
		t.Skipf("no %s to read", rmemMaxFile)
	}
	const big = 64 << 20
	if limit >= big {
		t.Skipf("net.core.rmem_max is %d here: no receive_buffer_bytes is above it", limit)
	}
	mk := func(name string, rcvbuf uint32) *cluster {
		return &cluster{name: name, spec: &sluicev1.Cluster{Name: name, ReceiveBufferBytes: rcvbuf}}
	}
	running := map[string]*cluster{"kept": mk("kept", big), "raised": mk("raised", big/2), "lowered": mk("lowered", big)}
	compiled := []*cluster{
		mk("new", big),       // set: told
		mk("raised", big),    // changed: told
		mk("kept", big),      // told when it was set
		mk("small", 4096),    // within the limit
		mk("lowered", 0),     // unset
		mk("other", big/256), // 256 KiB: told only where the limit is lower
	}
	var buf bytes.Buffer
	warnReceiveBuffers(slog.New(slog.NewTextHandler(&buf, nil)), compiled, running)
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 1 {
		t.Fatalf("logged %d lines, want one: %q", n, out)
	}
	for _, want := range []string{"above net.core.rmem_max", "net.core.rmem_max=" + strconv.FormatUint(limit, 10), "new=67108864", "raised=67108864"} {
		if !strings.Contains(out, want) {
			t.Errorf("the warning %q lacks %q", out, want)
		}
	}
	for _, not := range []string{"kept=", "small=", "lowered="} {
		if strings.Contains(out, not) {
			t.Errorf("the warning %q names %q", out, not)
		}
	}
	if other := strings.Contains(out, "other="); other != (big/256 > limit) {
		t.Errorf("the warning %q names a 256 KiB cluster: %t, want %t with the limit at %d", out, other, big/256 > limit, limit)
	}

	buf.Reset()
	warnReceiveBuffers(slog.New(slog.NewTextHandler(&buf, nil)), []*cluster{mk("small", 4096), mk("kept", big)}, running)
	if buf.Len() != 0 {
		t.Errorf("logged %q with no cluster newly above the limit", buf.String())
	}
}

// TestApplyReceiveBuffer: Apply hands a cluster's receive_buffer_bytes to
// its endpoints, those that survive a change included, and unsetting it
// gives them the kernel's sizing back.
func TestApplyReceiveBuffer(t *testing.T) {
	n := newNode(t)
	addr := freeAddr(t)
	const snap = `
clusters:
  - name: c
    %s
    endpoints: [{ name: a, address: "127.0.0.1:9" }]
listeners:
  - { name: l, address: "%s", protocol: HTTP, default_cluster: c }
`
	endpoint := func() *upstream.Endpoint {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.clusters["c"].members[0].Endpoint
	}
	for i, step := range []struct {
		extra string
		want  int
	}{
		{"", 0},
		{"receive_buffer_bytes: 8192", 8192},
		{"receive_buffer_bytes: 65536", 65536},
		{"", 0},
	} {
		var before *upstream.Endpoint
		if i > 0 {
			before = endpoint()
		}
		if err := n.Apply(strconv.Itoa(i+1), parse(t, snap, step.extra, addr)); err != nil {
			t.Fatal(err)
		}
		ep := endpoint()
		if before != nil && ep != before {
			t.Fatalf("step %d: the endpoint was replaced, not kept", i)
		}
		if got := ep.ReceiveBuffer(); got != step.want {
			t.Errorf("with %q the endpoint's receive buffer is %d, want %d", step.extra, got, step.want)
		}
	}
}
