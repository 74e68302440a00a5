package node

import (
	"net"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// Health checks of an endpoint named by DNS connect to the address its
// traffic uses, once the name resolved; before, to the name.
func TestChecksDialTheResolvedAddress(t *testing.T) {
	n := newNode(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	name := "localhost:" + port
	key := upstream.KeyOf("db", "a", name)
	if got := n.checkAddr(key, name); got != name {
		t.Errorf("before any apply: %q, want the name", got)
	}
	if err := n.Apply("1", parse(t, `
clusters:
  - name: db
    health_check: { interval: 1s }
    endpoints:
      - { name: a, address: %s }
`, name)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := n.checkAddr(key, name)
		if got == "127.0.0.1:"+port || got == "[::1]:"+port {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checks dial %q, want localhost's resolved address", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := n.checkAddr("db/other@x:1", "x:1"); got != "x:1" {
		t.Errorf("an unknown endpoint: %q", got)
	}
}
