package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// fakeNode is a fleet member that takes no port: it subscribes as a node
// with labels and records the versions it is sent.
type fakeNode struct {
	mu       sync.Mutex
	versions []string
	// stop ends its stream; the test's end does too.
	stop func()
}

// startFakeNode subscribes as node id with labels. With ack it ACKs each
// version it is sent; without, it answers nothing: a node stuck applying.
func startFakeNode(t *testing.T, cpAddr, id string, labels map[string]string, ack bool) *fakeNode {
	t.Helper()
	conn, err := grpc.NewClient(cpAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &fakeNode{stop: func() { cancel(); conn.Close() }}
	t.Cleanup(n.stop)
	stream, err := sluicev1.NewDiscoveryServiceClient(conn).StreamSnapshots(ctx)
	if err == nil {
		err = stream.Send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: id, Labels: labels}})
	}
	if err != nil {
		t.Fatalf("node %s: %v", id, err)
	}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			n.mu.Lock()
			n.versions = append(n.versions, r.GetVersionInfo())
			n.mu.Unlock()
			if ack && stream.Send(&sluicev1.DiscoveryRequest{VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}) != nil {
				return
			}
		}
	}()
	return n
}

// got returns the versions the node was sent, in order.
func (n *fakeNode) got() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.versions...)
}

// TestApplyWait is a CI pipeline gating on `sluicectl apply --wait`: exit 3
// while a node does not apply, 0 once every connected node has, 2 with the
// node's reason when one refuses.
func TestApplyWait(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	b := startBackend(t, "a")
	dp := startNode(t, c.addr, "node-a")
	snap := func(listen string) string {
		return writeFile(t, t.TempDir(), "snap.yaml", fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, b.addr, listen))
	}
	good := freeAddr(t)

	stop := startFakeNode(t, c.addr, "node-stuck", nil, false).stop
	waitFor(t, "both nodes to connect", func() bool {
		out, _, _ := ctl(t, c.addr, "nodes")
		return strings.Count(out, "connected") == 2
	})
	stdout, stderr, code := ctl(t, c.addr, "apply", "-f", snap(good), "--wait", "--wait-timeout", "1s")
	if code != 3 || !strings.Contains(stderr, "1 of 2 nodes have not applied version 1: node-stuck (applied -)") {
		t.Fatalf("apply --wait with a stuck node: exit %d, stdout %q, stderr %q; want 3 naming node-stuck", code, stdout, stderr)
	}
	waitVersion(t, dp, 1) // the version was stored and node-a runs it

	stop()
	stdout, stderr, code = ctl(t, c.addr, "set-weight", "web/a", "2", "--wait")
	if code != 0 || !strings.Contains(stdout, "1 node applied version 2 in ") {
		t.Fatalf("set-weight --wait: exit %d, stdout %q, stderr %q; want 0 and \"1 node applied version 2\"", code, stdout, stderr)
	}

	// A listener address some other process holds: node-a refuses.
	busy, err := net.Listen("tcp", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	stdout, stderr, code = ctl(t, c.addr, "apply", "-f", snap(busy.Addr().String()), "--wait")
	if code != 2 || !strings.Contains(stderr, "node node-a refused version 3: ") || !strings.Contains(stderr, "address already in use") {
		t.Fatalf("apply --wait refused by the node: exit %d, stdout %q, stderr %q; want 2 with node-a's reason", code, stdout, stderr)
	}

	t.Logf("refusal as printed: %s", stderr)
	if !strings.Contains(stderr, "a node that starts now is sent version 3 and has nothing to serve") || !strings.Contains(stderr, "sluicectl rollback 2\n") {
		t.Errorf("the refusal does not say what it leaves behind and how to go back to version 2: %q", stderr)
	}

	// As it says: a node that starts now refuses version 3 and serves
	// nothing; the rollback it names brings both nodes to one they apply.
	dpB := startNode(t, c.addr, "node-b")
	waitFor(t, "node-b to refuse version 3", func() bool {
		out, _, _ := ctl(t, c.addr, "nodes")
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "node-b ") && strings.Contains(l, "v3: ") {
				return true
			}
		}
		return false
	})
	if v, ls := dpB.Node.Version(), dpB.Node.Listeners(); v != "" || len(ls) != 0 {
		t.Fatalf("node-b, started after the refusal, runs version %q with listeners %+v; want nothing", v, ls)
	}
	stdout, stderr, code = ctl(t, c.addr, "rollback", "2", "--wait")
	if code != 0 || !strings.Contains(stdout, "2 nodes applied version 4 in ") {
		t.Fatalf("rollback 2 --wait: exit %d, stdout %q, stderr %q; want both nodes at version 4", code, stdout, stderr)
	}
	waitVersion(t, dpB, 4)

	// History keeps who refused version 3, for whoever looks for a
	// version to go back to later.
	waitFor(t, "history to name the nodes that refused version 3", func() bool {
		out, _, _ := ctl(t, c.addr, "history")
		return tableHas(out, "3", "REFUSED-BY", "node-a,node-b") && tableHas(out, "4*", "REFUSED-BY", "-")
	})
	// So do get's header and a rollback to version 3, which warns.
	stdout, stderr, code = ctl(t, c.addr, "get", "--version", "3")
	if first, _, _ := strings.Cut(stdout, "\n"); code != 0 || !strings.HasSuffix(first, "; refused by node-a,node-b") {
		t.Errorf("get --version 3: exit %d, first line %q (stderr %q); want it to end \"; refused by node-a,node-b\"", code, first, stderr)
	}
	stdout, stderr, code = ctl(t, c.addr, "rollback", "3", "--dry-run")
	want := "sluicectl rollback: warning: version 3 was refused by 2 nodes, node-a and node-b (the latest, node-b: listener public: listen tcp " + busy.Addr().String()
	if code != 0 || !strings.HasPrefix(stdout, "dry run: would apply version 5") || !strings.HasPrefix(stderr, want) || !strings.HasSuffix(stderr, "; they may refuse this rollback too\n") {
		t.Errorf("rollback 3 --dry-run: exit %d, stdout %q, stderr %q; want 0 and a warning starting %q", code, stdout, stderr, want)
	}

	// Version 3's file sent again, as a CI job run again would, warns as
	// well, in apply and in diff.
	bad := snap(busy.Addr().String())
	want = ", with this same snapshot, was refused by 2 nodes, node-a and node-b (the latest, node-b: listener public: listen tcp " + busy.Addr().String()
	stdout, stderr, code = ctl(t, c.addr, "apply", "-f", bad, "--dry-run")
	if code != 0 || !strings.HasPrefix(stdout, "dry run: would apply version 5") || !strings.Contains(stderr, "sluicectl apply: warning: version 3"+want) ||
		!strings.HasSuffix(stderr, "; they may refuse this apply too\n") {
		t.Errorf("apply -f (version 3's) --dry-run: exit %d, stdout %q, stderr %q; want 0 and a warning naming version 3 and the nodes", code, stdout, stderr)
	}
	stdout, stderr, code = ctl(t, c.addr, "diff", "-f", bad)
	if code != 0 || !strings.Contains(stdout, "~ listener public: address ") || !strings.Contains(stderr, "sluicectl diff: warning: version 3"+want) {
		t.Errorf("diff -f (version 3's): exit %d, stdout %q, stderr %q; want 0 and a warning naming version 3 and the nodes", code, stdout, stderr)
	}

	_, stderr, code = ctl(t, c.addr, "apply", "-f", snap(good), "--wait", "--dry-run")
	if code != 2 || !strings.Contains(stderr, "--wait has nothing to wait for with --dry-run") {
		t.Errorf("--wait --dry-run: exit %d, stderr %q; want a usage error", code, stderr)
	}
}
