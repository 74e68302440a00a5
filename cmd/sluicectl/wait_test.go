package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// During a rolling restart a draining node refuses every version ("node is
// shutting down"); --wait leaves it out, as it does a disconnected node,
// rather than report that the fleet refused the version.
func TestWaitLeavesOutDrainingNodes(t *testing.T) {
	code, stdout, stderr := applyWaitAmong(t,
		&sluicev1.NodeStatus{Id: "edge-1", Connected: true, Draining: true, Group: "default", AckedVersion: 1,
			SentVersion: 2, NackedVersion: 2, NackError: "node is shutting down"},
		&sluicev1.NodeStatus{Id: "edge-2", Connected: true, Group: "default", AckedVersion: 2, SentVersion: 2})
	if code != 0 || !strings.Contains(stdout, "1 node applied version 2") {
		t.Errorf("apply --wait: exit %d\nstdout: %s\nstderr: %s\nwant exit 0: the one node not draining applied version 2", code, stdout, stderr)
	}
}

// A node behind that was sent a newer version (another apply) before the
// waited one, and refused it, is named with the version it refused.
func TestWaitNamesANewerRefusal(t *testing.T) {
	code, _, stderr := applyWaitAmong(t,
		&sluicev1.NodeStatus{Id: "edge-1", Connected: true, Group: "default", AckedVersion: 1, SentVersion: 3,
			NackedVersion: 3, NackError: "listener taken: bind: address already in use"},
		&sluicev1.NodeStatus{Id: "edge-2", Connected: true, Group: "default", AckedVersion: 2, SentVersion: 2})
	want := "sluicectl apply: node edge-1 refused version 3, which replaced version 2 before it applied it: listener taken: bind: address already in use\n"
	if code != exitNacked || !strings.HasPrefix(stderr, want) {
		t.Errorf("apply --wait: exit %d\nstderr: %s\nwant exit %d, first line %q", code, stderr, exitNacked, want)
	}
}

// An apply that changed nothing sent nothing: --wait says the nodes run
// the version, without a time since the command, which would mean nothing.
func TestWaitAfterUnchangedApply(t *testing.T) {
	f := &fakeCP{}
	addr := startCP(t, f)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	f.mu.Lock()
	f.nodes = []*sluicev1.NodeStatus{{Id: "edge-1", Connected: true, Group: "default", AckedVersion: 1, SentVersion: 1}}
	f.mu.Unlock()
	code, stdout, stderr := sluicectl(t, addr, "apply", "-f", quickstart, "--wait")
	if want := "unchanged (version 1)\n1 node applied version 1\n"; code != 0 || stdout != want {
		t.Errorf("apply --wait of the same file: exit %d\nstdout: %q\nstderr: %s\nwant exit 0, stdout %q", code, stdout, stderr, want)
	}
}

// applyWaitAmong applies version 1 to a fake control plane whose fleet is
// then nodes, and runs apply --wait of version 2 there.
func applyWaitAmong(t *testing.T, nodes ...*sluicev1.NodeStatus) (code int, stdout, stderr string) {
	t.Helper()
	f := &fakeCP{}
	addr := startCP(t, f)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	f.mu.Lock()
	f.nodes = nodes
	f.mu.Unlock()
	return sluicectl(t, addr, "apply", "-f", writeFile(t, "heavier.yaml", heavier), "--wait", "--wait-timeout", "5s")
}

// ackingNode subscribes to the control plane at addr as node id, ACKs
// every response, and sends the version of each on the channel returned.
func ackingNode(t *testing.T, addr, id string) <-chan string {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := sluicev1.NewDiscoveryServiceClient(conn).StreamSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: id}}); err != nil {
		t.Fatal(err)
	}
	versions := make(chan string, 16)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			versions <- r.GetVersionInfo()
			if stream.Send(&sluicev1.DiscoveryRequest{VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}) != nil {
				return
			}
		}
	}()
	return versions
}

// ctlResult is what a run of sluicectl gave.
type ctlResult struct {
	code           int
	stdout, stderr string
}

// sluicectlAsync runs sluicectl in the background; its result comes on the
// channel returned.
func sluicectlAsync(t *testing.T, addr string, args ...string) <-chan ctlResult {
	done := make(chan ctlResult, 1)
	go func() {
		code, stdout, stderr := sluicectl(t, addr, args...)
		done <- ctlResult{code, stdout, stderr}
	}()
	return done
}

// quickstartWithNode starts a real control plane, applies the quickstart
// as version 1, and connects an ackingNode of id that was sent it.
func quickstartWithNode(t *testing.T, id string) (addr string, versions <-chan string) {
	t.Helper()
	addr = startRealCP(t)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	versions = ackingNode(t, addr, id)
	sent(t, versions, "1")
	return addr, versions
}

func sent(t *testing.T, versions <-chan string, want string) {
	t.Helper()
	select {
	case v := <-versions:
		if v != want {
			t.Fatalf("the node was sent version %s; want %s", v, want)
		}
	case <-time.After(defaultTestTimeout):
		t.Fatalf("the node was not sent version %s", want)
	}
}

// An endpoint edit during apply --canary --wait is no promotion: the wait
// goes on following the rollout (here until --wait-timeout, exit 3).
func TestWaitRolloutFollowsAnEditedRollout(t *testing.T) {
	addr, versions := quickstartWithNode(t, "n1")

	done := sluicectlAsync(t, addr, "apply", "-f", writeFile(t, "heavier.yaml", heavier),
		"--canary", "1", "--canary-window", "1h", "--wait", "--wait-timeout", "3s")
	sent(t, versions, "2")
	// The group's version, above the group's change; the rollout's line
	// names the canaries'.
	wantDrain := "applied version 3\n" +
		"  ~ cluster web: endpoint web1 state ACTIVE -> DRAINING\n" +
		"  ~ rollout default: the same edit to the canaries' snapshot, as version 4\n"
	if code, stdout, stderr := sluicectl(t, addr, "drain", "web/web1"); code != 0 || stdout != wantDrain {
		t.Fatalf("drain: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	sent(t, versions, "4") // the canary's own version of the drain
	r := <-done
	if r.code != exitWaitTimeout || strings.Contains(r.stdout, "canaries passed") {
		t.Errorf("apply --canary --wait across a drain: exit %d\nstdout: %s\nstderr: %s\nwant exit 3, the rollout still watching its canaries", r.code, r.stdout, r.stderr)
	}
}

// TestWaitNamesTheGroup: --wait with no node of the group connected names
// the group when nodes of other groups are, which would otherwise read as
// no node connected at all.
func TestWaitNamesTheGroup(t *testing.T) {
	elsewhere := []*sluicev1.NodeStatus{{Id: "node-1", Connected: true, Group: "zone-l"}}
	for _, tt := range []struct {
		nodes []*sluicev1.NodeStatus
		group string
		want  string
	}{
		{nil, "default", "sluicectl: no node is connected; each gets version 4 when it connects\n"},
		{elsewhere, "default", "sluicectl: no node of group default is connected; each gets version 4 when it connects\n"},
		{nil, "canary", "sluicectl: no node of group canary is connected; each gets version 4 when it connects\n"},
	} {
		var stderr bytes.Buffer
		c := &cli{stdout: &bytes.Buffer{}, stderr: &stderr}
		c.printWaited(tally(tt.nodes, tt.group, 4), tt.group, 4, 0)
		if stderr.String() != tt.want {
			t.Errorf("%d nodes elsewhere, group %s: %q, want %q", len(tt.nodes), tt.group, stderr.String(), tt.want)
		}
	}
}

// TestRefusedHintNamesTheWayBack: a refusal names the rollback to the
// version the refusing nodes run, with the group's flag, and no rollback
// when they run different versions.
func TestRefusedHintNamesTheWayBack(t *testing.T) {
	node := func(id string, acked uint64) *sluicev1.NodeStatus {
		return &sluicev1.NodeStatus{Id: id, Connected: true, AckedVersion: acked, NackedVersion: 9}
	}
	for _, tt := range []struct {
		group   string
		refused []*sluicev1.NodeStatus
		want    string
	}{
		{"default", []*sluicev1.NodeStatus{node("a", 7), node("b", 7)}, "apply it again, or go back to the version they ran: sluicectl rollback 7\n"},
		{"edge", []*sluicev1.NodeStatus{node("a", 7)}, "sluicectl rollback 7 --group edge\n"},
		{"default", []*sluicev1.NodeStatus{node("a", 7), node("b", 8)}, "fix the snapshot and apply it again\n"},
		{"default", []*sluicev1.NodeStatus{node("a", 0)}, "fix the snapshot and apply it again\n"},
	} {
		var stderr bytes.Buffer
		c := &cli{stdout: &bytes.Buffer{}, stderr: &stderr}
		c.refusedHint("apply", tt.group, 9, tt.refused)
		if got := stderr.String(); !strings.HasSuffix(got, tt.want) || !strings.Contains(got, "a node that starts now is sent version 9 and has nothing to serve") {
			t.Errorf("group %s, %d refused: %q, want it to end %q", tt.group, len(tt.refused), got, tt.want)
		}
	}
}

// TestAppliedVersionDuringARollout: the first line of an edit's outcome
// names the version the group's nodes are sent; only an edit that also
// changed a rollout's snapshot stored a newer one, the canaries', which
// the rollout's line names.
func TestAppliedVersionDuringARollout(t *testing.T) {
	rollout := func(op string) *sluicev1.ResourceChange {
		return &sluicev1.ResourceChange{Op: op, Kind: "rollout", Name: "default"}
	}
	for _, tt := range []struct {
		what string
		resp *sluicev1.ApplyResponse
		dry  bool
		want string
	}{
		{"edit during a rollout", &sluicev1.ApplyResponse{Version: 9, GroupVersion: 8, Changed: true,
			ResourceChanges: []*sluicev1.ResourceChange{{Op: "changed", Kind: "cluster", Name: "web"}, rollout("changed")}}, false, "applied version 8\n"},
		{"dry run of it", &sluicev1.ApplyResponse{Version: 9, GroupVersion: 8, Changed: true,
			ResourceChanges: []*sluicev1.ResourceChange{rollout("changed")}}, true, "dry run: would apply version 8\n"},
		{"a rollout's start", &sluicev1.ApplyResponse{Version: 7, GroupVersion: 6, Changed: true,
			ResourceChanges: []*sluicev1.ResourceChange{rollout("added")}}, false, "applied version 7\n"},
		{"a selector's change", &sluicev1.ApplyResponse{Version: 5, GroupVersion: 3, Changed: true, Group: "edge",
			ResourceChanges: []*sluicev1.ResourceChange{{Op: "changed", Kind: "group", Name: "edge"}}}, false, "applied version 5 to group edge\n"},
		{"a control plane without groups", &sluicev1.ApplyResponse{Version: 5, Changed: true}, false, "applied version 5\n"},
	} {
		var stdout bytes.Buffer
		c := &cli{stdout: &stdout, stderr: &bytes.Buffer{}}
		c.printApplied(tt.resp, tt.dry)
		if stdout.String() != tt.want {
			t.Errorf("%s: %q, want %q", tt.what, stdout.String(), tt.want)
		}
	}
}

// A refusal does not end the wait while other nodes have not answered:
// --wait gives them refusalSettle, then names every node that refused,
// counts those that applied, and names those that had not answered.
func TestWaitReportsEveryRefusal(t *testing.T) {
	refusing := func(id string) *sluicev1.NodeStatus {
		return &sluicev1.NodeStatus{Id: id, Connected: true, Group: "default", AckedVersion: 1, SentVersion: 2,
			NackedVersion: 2, NackError: "cluster tcpb: tls.ca_file: open missing-ca.pem: no such file or directory"}
	}
	start := time.Now()
	code, _, stderr := applyWaitAmong(t, refusing("n1"), refusing("n3"),
		&sluicev1.NodeStatus{Id: "n2", Connected: true, Group: "default", AckedVersion: 2, SentVersion: 2},
		&sluicev1.NodeStatus{Id: "n4", Connected: true, Group: "default", AckedVersion: 1, SentVersion: 2})
	for _, want := range []string{
		"sluicectl apply: node n1 refused version 2: cluster tcpb: tls.ca_file: open missing-ca.pem: no such file or directory\n" +
			"sluicectl apply: node n3 refused version 2: cluster tcpb: tls.ca_file: open missing-ca.pem: no such file or directory\n" +
			"sluicectl apply: of 4 nodes, 2 refused version 2 and 1 applied it; 1 had not answered when it stopped waiting: n4 (applied 1)\n",
		"sluicectl rollback 1",
	} {
		if code != exitNacked || !strings.Contains(stderr, want) {
			t.Errorf("apply --wait: exit %d\nstderr: %s\nwant exit %d, with %q", code, stderr, exitNacked, want)
		}
	}
	if took := time.Since(start); took < refusalSettle {
		t.Errorf("apply --wait returned after %v, before n4 had refusalSettle (%v) to answer", took, refusalSettle)
	}

	// A node that answers after the first refusal, within refusalSettle,
	// is counted as it answered.
	f := &fakeCP{}
	addr := startCP(t, f)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	behind := &sluicev1.NodeStatus{Id: "n2", Connected: true, Group: "default", AckedVersion: 1, SentVersion: 2}
	f.mu.Lock()
	f.nodes = []*sluicev1.NodeStatus{refusing("n1"), behind}
	f.mu.Unlock()
	answered := time.AfterFunc(300*time.Millisecond, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.nodes = []*sluicev1.NodeStatus{refusing("n1"), {Id: "n2", Connected: true, Group: "default", AckedVersion: 2, SentVersion: 2}}
	})
	defer answered.Stop()
	code, _, stderr = sluicectl(t, addr, "apply", "-f", writeFile(t, "heavier.yaml", heavier), "--wait", "--wait-timeout", "5s")
	if want := "sluicectl apply: of 2 nodes, 1 refused version 2 and 1 applied it\n"; code != exitNacked || !strings.Contains(stderr, want) {
		t.Errorf("apply --wait, n2 applying 300ms in: exit %d\nstderr: %s\nwant exit %d, with %q", code, stderr, exitNacked, want)
	}

	// Every node answered: no wait beyond the answers.
	code, _, stderr = applyWaitAmong(t, refusing("n1"),
		&sluicev1.NodeStatus{Id: "n2", Connected: true, Group: "default", AckedVersion: 2, SentVersion: 2})
	if want := "sluicectl apply: of 2 nodes, 1 refused version 2 and 1 applied it\n"; code != exitNacked || !strings.Contains(stderr, want) {
		t.Errorf("apply --wait: exit %d\nstderr: %s\nwant exit %d, with %q", code, stderr, exitNacked, want)
	}
}

// --min-nodes: a CI job that must not pass with too few nodes running the
// version waits for them to connect and apply it, and fails (exit 3) when
// they do not by --wait-timeout.
func TestWaitForMinNodes(t *testing.T) {
	addr, n1 := quickstartWithNode(t, "n1")

	code, stdout, stderr := sluicectl(t, addr, "apply", "-f", writeFile(t, "heavier.yaml", heavier), "--wait", "--min-nodes", "2", "--wait-timeout", "1s")
	want := "sluicectl apply: 1 node applied version 2; --min-nodes asks for 2: waiting for more to connect\n" +
		"sluicectl apply: gave up after 1s: 1 node applied version 2, fewer than the 2 --min-nodes asks for\n"
	if code != exitWaitTimeout || stderr != want {
		t.Errorf("apply --wait --min-nodes 2 with one node: exit %d\nstdout: %s\nstderr: %s\nwant exit %d, stderr:\n%s", code, stdout, stderr, exitWaitTimeout, want)
	}
	sent(t, n1, "2")

	// A second node connecting during the wait ends it.
	done := sluicectlAsync(t, addr, "set-weight", "web/web1", "5", "--wait", "--min-nodes", "2", "--wait-timeout", "20s")
	sent(t, n1, "3")
	n2 := ackingNode(t, addr, "n2")
	sent(t, n2, "3")
	r := <-done
	if r.code != 0 || !strings.Contains(r.stdout, "2 nodes applied version 3 in ") {
		t.Errorf("set-weight --wait --min-nodes 2, n2 connecting during it: exit %d\nstdout: %s\nstderr: %s\nwant exit 0, 2 nodes applied version 3", r.code, r.stdout, r.stderr)
	}
}

// TestWaitInterrupted: a wait the user stops (Ctrl-C, SIGTERM: the
// context run is given ends) says so and exits 130, not as if its
// --wait-timeout had passed: a CI job tells the two apart.
func TestWaitInterrupted(t *testing.T) {
	addr, _ := quickstartWithNode(t, "n1")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--cp", addr, "apply", "-f", writeFile(t, "heavier.yaml", heavier), "--wait", "--min-nodes", "2", "--wait-timeout", "1m"},
		strings.NewReader(""), &stdout, &stderr)
	last := stderr.String()[strings.LastIndex(strings.TrimSuffix(stderr.String(), "\n"), "\n")+1:]
	if code != exitInterrupted || !strings.HasPrefix(last, "sluicectl apply: interrupted after ") ||
		!strings.HasSuffix(last, ": 1 node applied version 2, fewer than the 2 --min-nodes asks for\n") {
		t.Errorf("apply --wait interrupted: exit %d\nstderr: %s\nwant exit %d, the last line saying it was interrupted", code, stderr.String(), exitInterrupted)
	}
}
