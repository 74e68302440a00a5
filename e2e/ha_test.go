package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/chromedp/chromedp"

	"github.com/sluice-lb/sluice/controlplane/auth"
	"github.com/sluice-lb/sluice/internal/etcdtest"
	"github.com/sluice-lb/sluice/internal/pki"
	"github.com/sluice-lb/sluice/internal/promtext"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// The HA tests run real sluice-cp processes with --etcd on one etcd started
// in the test process, and real sluice-dp processes that list them all.
//
// Two nodes on one machine cannot apply one snapshot with a listener (both
// would bind its address), so TestHAFailover proxies through one node and
// TestHAFleet runs two nodes on snapshots of clusters only: what a user
// sees of them there is what sluicectl shows, and their own /status.

// haReplica is one sluice-cp process.
type haReplica struct {
	addr string
	http string
	proc *proc
	api  sluicev1.ConfigServiceClient
}

// haPrefix is the etcd prefix of a test's replicas.
func haPrefix(t *testing.T) string { return "/" + t.Name() + "/" }

// startReplicas starts n replicas on etcd, with extra flags, and waits
// until they serve.
func startReplicas(t *testing.T, etcd *etcdtest.Server, n int, extra ...string) []*haReplica {
	t.Helper()
	var rs []*haReplica
	for range n {
		r := &haReplica{addr: freeAddr(t), http: freeAddr(t)}
		r.proc = start(t, "sluice-cp", append([]string{"--etcd", etcd.Endpoint, "--etcd-prefix", haPrefix(t),
			"--listen", r.addr, "--http", r.http}, extra...)...)
		conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		r.api = sluicev1.NewConfigServiceClient(conn)
		rs = append(rs, r)
	}
	for _, r := range rs {
		waitFor(t, "sluice-cp "+r.addr+" to serve", func() bool {
			resp, err := http.Get("http://" + r.http + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == 200
		})
	}
	return rs
}

// kill ends the replica's process at once (SIGKILL, by pid): no goodbye to
// its nodes, to etcd or to its lease.
func (r *haReplica) kill(t *testing.T) {
	t.Helper()
	if err := r.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-r.proc.exited
}

// metric returns the value of an unlabelled metric on the replica's
// /metrics, or -1.
func (r *haReplica) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		var v float64
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return -1
}

// webSnap writes a snapshot whose HTTP listener at listen sends every
// request to backend, and returns its path.
func webSnap(t *testing.T, backend, listen string) string {
	t.Helper()
	return writeFile(t, t.TempDir(), "snap.yaml", fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: e, address: %s }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, backend, listen))
}

// haNode is one sluice-dp process.
type haNode struct {
	id    string
	admin string
	proc  *proc
}

func startHANode(t *testing.T, id string, cps ...*haReplica) *haNode {
	t.Helper()
	var addrs []string
	for _, r := range cps {
		addrs = append(addrs, r.addr)
	}
	n := &haNode{id: id, admin: freeAddr(t)}
	n.proc = start(t, "sluice-dp", "--cp", strings.Join(addrs, ","), "--node-id", id,
		"--admin", n.admin, "--drain-grace", "1s")
	return n
}

// version returns the version the node says it runs, on its /status.
func (n *haNode) version() string {
	resp, err := http.Get("http://" + n.admin + "/status")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var st struct {
		Version string `json:"version"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	return st.Version
}

// replicasOf returns the replicas whose records in etcd say node id is
// connected to them (the dead one's record lasts until its lease expires).
func replicasOf(t *testing.T, client *clientv3.Client, id string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	dir := haPrefix(t) + "nodes/"
	resp, err := client.Get(ctx, dir, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), dir)
		i := strings.LastIndexByte(rest, '/')
		st := &sluicev1.NodeStatus{}
		if i < 0 || rest[i+1:] != id || protojson.Unmarshal(kv.Value, st) != nil {
			continue
		}
		if st.GetConnected() {
			out = append(out, rest[:i])
		}
	}
	return out
}

// nodesTable runs sluicectl nodes through cp and returns its rows by id,
// each by column title: LABELS, GROUP, STATE, REPLICA, APPLIED, SENT and
// LAST-NACK (the node group of these tests is always "default", so no
// cell but the last has spaces).
func nodesTable(t *testing.T, cp string) map[string]map[string]string {
	t.Helper()
	stdout, stderr, code := ctl(t, cp, "nodes")
	if code != 0 {
		t.Fatalf("sluicectl --cp %s nodes: exit %d: %s", cp, code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	head := strings.Fields(lines[0])
	out := map[string]map[string]string{}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < len(head) {
			continue
		}
		row := map[string]string{}
		for i, title := range head {
			row[title] = f[i]
		}
		row[head[len(head)-1]] = strings.Join(f[len(head)-1:], " ")
		out[f[0]] = row
	}
	return out
}

// applyVia stores a YAML snapshot through one replica's API and returns its
// version.
func applyVia(t *testing.T, r *haReplica, yaml string) uint64 {
	t.Helper()
	snap, err := snapshot.Parse([]byte(yaml), "ha.yaml")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := r.api.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: snap, Author: "e2e"})
	if err != nil {
		t.Fatalf("apply via %s: %v", r.addr, err)
	}
	return resp.GetVersion()
}

// clusterOnly is a snapshot without listeners, which any number of nodes on
// one machine can apply.
func clusterOnly(weight int) string {
	return fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: 127.0.0.1:9, weight: %d }]
`, weight)
}

// TestHAFleet: two replicas, a node on each. A version applied through one
// reaches the other's node within a second; sluicectl nodes, stats, conns,
// top, apply --wait and shutdown-sessions through either replica reach
// both nodes; when a replica dies its node moves to the other and keeps
// applying new versions. The replicas keep 2 versions: history through
// either shows the same two, and the leader deletes the others from etcd.
func TestHAFleet(t *testing.T) {
	binaries(t)
	etcd := etcdtest.Start(t)
	client := etcd.Client(t)
	rs := startReplicas(t, etcd, 2, "--keep-versions", "2")
	backend, listen := startBackend(t, "a"), freeAddr(t)
	// clusterOnly with a TCP listener, which both nodes serve on one port
	// (SO_REUSEPORT): the kernel spreads the connections over them.
	snap := func(weight int) string {
		return fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s, weight: %d }]
listeners:
  - { name: public, address: %s, protocol: TCP, default_cluster: web }
`, backend.addr, weight, listen)
	}
	n1 := startHANode(t, "node-1", rs[0], rs[1])
	n2 := startHANode(t, "node-2", rs[1], rs[0])
	for _, r := range rs {
		waitFor(t, "both nodes listed as connected through "+r.addr, func() bool {
			tab := nodesTable(t, r.addr)
			return len(tab) == 2 && tab["node-1"]["STATE"] == "connected" && tab["node-2"]["STATE"] == "connected"
		})
	}
	if got := replicasOf(t, client, "node-2"); len(got) != 1 || got[0] != rs[1].addr {
		t.Fatalf("node-2 is on %v, want %s (the first in its --cp)", got, rs[1].addr)
	}

	// Through replica 1, to the node on replica 2.
	start := time.Now()
	v1 := applyVia(t, rs[0], snap(1))
	waitFor(t, "node-2 to apply version 1", func() bool { return n2.version() == fmt.Sprint(v1) })
	took := time.Since(start)
	t.Logf("apply through replica 1 -> node-2 on replica 2 runs it: %v", took)
	if took > time.Second {
		t.Errorf("node-2 applied the version %v after it was applied through the other replica, want within a second", took)
	}
	waitFor(t, "replica 1 to list node-2's ACK", func() bool { return nodesTable(t, rs[0].addr)["node-2"]["APPLIED"] == fmt.Sprint(v1) })
	t.Logf("apply through replica 1 -> replica 1 lists node-2's ACK: %v", time.Since(start))
	waitVersion := func(n *haNode, v uint64) {
		waitFor(t, n.id+" to apply version "+fmt.Sprint(v), func() bool { return n.version() == fmt.Sprint(v) })
	}
	waitVersion(n1, v1)

	// apply --wait through either replica waits for both nodes.
	for i, r := range rs {
		stdout, stderr, code := ctl(t, r.addr, "apply", "-f", writeFile(t, t.TempDir(), "s.yaml", snap(2+i)), "--wait", "--wait-timeout", "10s")
		want := fmt.Sprintf("2 nodes applied version %d in ", v1+1+uint64(i))
		if code != 0 || !strings.Contains(stdout, want) {
			t.Fatalf("apply --wait through %s: exit %d, stdout %q, stderr %q; want 0 and %q", r.addr, code, stdout, stderr, want)
		}
		t.Logf("apply --wait through replica %d: %s", i+1, strings.TrimSpace(stdout))
	}
	v3 := v1 + 2
	for _, r := range rs {
		tab := nodesTable(t, r.addr)
		for _, id := range []string{"node-1", "node-2"} {
			if row := tab[id]; row["STATE"] != "connected" || row["APPLIED"] != fmt.Sprint(v3) {
				t.Errorf("sluicectl --cp %s nodes: %s %v, want connected, applied %d", r.addr, id, row, v3)
			}
		}
	}

	// Each node reports its stats and connection records to the replica
	// its streams are on; sluicectl through either replica asks the other
	// for its node's.
	on := map[string]string{"node-1": rs[0].addr, "node-2": rs[1].addr}
	const conns = 30
	web := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for range conns {
		if body, err := get(web, "http://"+listen+"/"); err != nil || body != "a" {
			t.Fatalf("GET through the listener: %q, %v; want backend a's answer", body, err)
		}
	}
	for _, r := range rs {
		tab := nodesTable(t, r.addr)
		for id, want := range on {
			if got := tab[id]["REPLICA"]; got != want {
				t.Errorf("sluicectl --cp %s nodes: %s on replica %q, want %s", r.addr, id, got, want)
			}
		}
		var stdout, stderr string
		var code int
		waitFor(t, "sluicectl --cp "+r.addr+" stats to show both nodes' endpoint", func() bool {
			stdout, stderr, code = ctl(t, r.addr, "stats")
			return strings.Count(stdout, "web/a") == 2
		})
		if code != 0 || stderr != "" || !strings.Contains(stdout, "node-1 (connected, version") || !strings.Contains(stdout, "node-2 (connected, version") {
			t.Errorf("sluicectl --cp %s stats: exit %d, stderr %q:\n%s\nwant 0 and both nodes' figures", r.addr, code, stderr, stdout)
		}
		var list struct {
			Records []struct {
				NodeID string `json:"node_id"`
			} `json:"records"`
		}
		waitFor(t, fmt.Sprintf("sluicectl --cp %s conns to list the %d connections", r.addr, conns), func() bool {
			stdout, stderr, code = ctl(t, r.addr, "conns", "--limit", "1000", "-o", "json")
			return json.Unmarshal([]byte(stdout), &list) == nil && len(list.Records) >= conns
		})
		by := map[string]int{}
		for _, rec := range list.Records {
			by[rec.NodeID]++
		}
		if code != 0 || stderr != "" || len(list.Records) != conns || by["node-1"] == 0 || by["node-2"] == 0 {
			t.Errorf("sluicectl --cp %s conns: exit %d, stderr %q, records by node %v; want 0 and %d records of both nodes:\n%s", r.addr, code, stderr, by, conns, stdout)
		}
		t.Logf("sluicectl --cp %s conns: records by node %v", r.addr, by)
	}
	if stdout, stderr, code := ctl(t, rs[0].addr, "top", "--once"); code != 0 ||
		!strings.Contains(stdout, "node-1 (connected, reported") || !strings.Contains(stdout, "node-2 (connected, reported") {
		t.Errorf("sluicectl --cp %s top --once: exit %d, stderr %q:\n%s\nwant both nodes' rates", rs[0].addr, code, stderr, stdout)
	}

	// shutdown-sessions through either replica reaches both nodes: the
	// other replica's node through it.
	for _, r := range rs {
		stdout, stderr, code := ctl(t, r.addr, "shutdown-sessions", "web/a")
		if want := "node-1  closed 0 connections\nnode-2  closed 0 connections\n"; code != 0 || stdout != want {
			t.Errorf("sluicectl --cp %s shutdown-sessions web/a: exit %d, stderr %q, stdout:\n%s\nwant exit 0 and\n%s", r.addr, code, stderr, stdout, want)
		}
	}

	// Replica 2 dies; node-2 moves to replica 1 and keeps applying.
	rs[1].kill(t)
	killed := time.Now()
	waitFor(t, "node-2 to move to replica 1", func() bool {
		for _, r := range replicasOf(t, client, "node-2") {
			if r == rs[0].addr {
				return true
			}
		}
		return false
	})
	t.Logf("node-2 connected to replica 1 %v after replica 2 was killed", time.Since(killed))
	waitFor(t, "replica 1 to show node-2's stats", func() bool {
		stdout, _, _ := ctl(t, rs[0].addr, "stats", "--node", "node-2")
		return strings.HasPrefix(stdout, "node-2 (connected, version") && strings.Contains(stdout, "web/a")
	})
	both := rs[1].addr + "," + rs[0].addr // the dead one first: sluicectl goes on to the next
	stdout, stderr, code := ctl(t, both, "apply", "-f", writeFile(t, t.TempDir(), "s.yaml", snap(9)), "--wait", "--wait-timeout", "10s")
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("2 nodes applied version %d in ", v3+1)) {
		t.Fatalf("apply --wait after replica 2 died: exit %d, stdout %q, stderr %q; want both nodes to apply version %d", code, stdout, stderr, v3+1)
	}
	waitVersion(n2, v3+1)

	stdout, stderr, code = ctl(t, rs[0].addr, "history")
	var kept []string
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
		kept = append(kept, strings.Fields(line)[0])
	}
	if want := []string{fmt.Sprint(v3+1) + "*", fmt.Sprint(v3)}; code != 0 || !slices.Equal(kept, want) {
		t.Errorf("history: exit %d, versions %q (stderr %q); want %q", code, kept, stderr, want)
	}
	waitFor(t, "the leader to delete the versions not kept from etcd", func() bool {
		resp, err := client.Get(context.Background(), haPrefix(t)+"info/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 2
	})
}

// TestHAFailover: three replicas, a node listing all of them that proxies a
// steady stream of requests. The replica the node is on is killed; the node
// moves to the next, is not sent the version it already runs again, answers
// every request throughout, and applies a version applied through the
// third replica.
func TestHAFailover(t *testing.T) {
	binaries(t)
	etcd := etcdtest.Start(t)
	client := etcd.Client(t)
	rs := startReplicas(t, etcd, 3)
	a, b := startBackend(t, "a"), startBackend(t, "b")
	listen := freeAddr(t)
	snap := func(backend string) string { return webSnap(t, backend, listen) }
	n := startHANode(t, "node-1", rs...)
	waitFor(t, "node-1 to connect", func() bool { return len(nodesTable(t, rs[2].addr)) == 1 })
	stdout, stderr, code := ctl(t, rs[0].addr, "apply", "-f", snap(a.addr), "--wait")
	if code != 0 || !strings.Contains(stdout, "1 node applied version 1") {
		t.Fatalf("apply --wait: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := replicasOf(t, client, "node-1"); len(got) != 1 || got[0] != rs[0].addr {
		t.Fatalf("node-1 is on %v, want %s (the first in its --cp)", got, rs[0].addr)
	}

	// A client sends requests one after the other, on keep-alive
	// connections, for as long as the failover takes.
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		errs       []string
		answered   = map[string]int{}
		stop       = make(chan struct{})
		done       = make(chan struct{})
	)
	go func() {
		defer close(done)
		c := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			body, err := get(c, "http://"+listen+"/")
			mu.Lock()
			if err != nil {
				failed.Add(1)
				errs = append(errs, err.Error())
			} else {
				ok.Add(1)
				answered[body]++
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()
	waitFor(t, "traffic through node-1", func() bool { return ok.Load() > 20 })

	rs[0].kill(t)
	killed := time.Now()
	waitFor(t, "node-1 to move to replica 2", func() bool {
		tab := nodesTable(t, rs[1].addr)
		for _, r := range replicasOf(t, client, "node-1") {
			if r == rs[1].addr && tab["node-1"]["STATE"] == "connected" {
				return true
			}
		}
		return false
	})
	t.Logf("node-1 connected to replica 2 %v after replica 1 was killed", time.Since(killed))
	// It told replica 2 it runs version 1, the current one: nothing was
	// pushed to it again.
	if pushes := rs[1].metric(t, "sluice_cp_pushes_total"); pushes != 0 {
		t.Errorf("replica 2 pushed %v versions to the node that already ran the current one, want 0", pushes)
	}
	if row := nodesTable(t, rs[2].addr)["node-1"]; row["STATE"] != "connected" || row["APPLIED"] != "1" {
		t.Errorf("sluicectl nodes through replica 3: node-1 %v, want connected, applied 1", row)
	}

	// A version applied through the third replica reaches it.
	applied := time.Now()
	stdout, stderr, code = ctl(t, rs[2].addr, "apply", "-f", snap(b.addr), "--wait")
	if code != 0 || !strings.Contains(stdout, "1 node applied version 2") {
		t.Fatalf("apply --wait through replica 3: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	t.Logf("apply --wait through replica 3 to node-1 on replica 2: %v (sluicectl: %s)", time.Since(applied), strings.TrimSpace(stdout))
	if v := n.version(); v != "2" {
		t.Errorf("node-1 runs version %q, want 2", v)
	}
	waitFor(t, "backend b to answer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return answered["b"] > 10
	})
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	t.Logf("requests during the failover: %d answered (%v), %d failed", ok.Load(), answered, failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed during the failover, want 0: %q", failed.Load(), errs)
	}
}

// TestHAHungReplica: a replica that stops answering without closing its
// sockets (SIGSTOP here; a frozen VM or a half-dead host alike) keeps its
// node listed until the node has noticed and moved, so apply --wait
// through another replica waits for that node and does not report the
// others alone. The hung replica's records outlive its silence (their
// lease, 30 s) longer than its node takes to give up on it (keepalive,
// 10 s + 5 s) and reconnect.
func TestHAHungReplica(t *testing.T) {
	binaries(t)
	etcd := etcdtest.Start(t)
	rs := startReplicas(t, etcd, 2)
	hung, live := rs[0], rs[1]
	n1 := startHANode(t, "node-1", hung, live)
	n2 := startHANode(t, "node-2", live, hung)
	waitFor(t, "both nodes to connect", func() bool { return len(nodesTable(t, live.addr)) == 2 })
	stdout, stderr, code := ctl(t, live.addr, "apply", "-f", writeFile(t, t.TempDir(), "s.yaml", clusterOnly(1)), "--wait")
	if code != 0 || !strings.Contains(stdout, "2 nodes applied version 1") {
		t.Fatalf("apply --wait: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := nodesTable(t, live.addr)["node-1"]["REPLICA"]; got != hung.addr {
		t.Fatalf("node-1 is on %q, want %s (the first in its --cp)", got, hung.addr)
	}

	if err := hung.proc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Before the process's own cleanup, which stops it with SIGTERM.
	t.Cleanup(func() { hung.proc.cmd.Process.Signal(syscall.SIGCONT) })
	stopped := time.Now()

	// Past the 10 s the records used to last: node-1 still counts.
	time.Sleep(11 * time.Second)
	if got := nodesTable(t, live.addr)["node-1"]; got["STATE"] == "" {
		t.Errorf("11s after its replica hung, node-1 is not listed by the other replica")
	}
	stdout, stderr, code = ctl(t, live.addr, "set-weight", "web/a", "3", "--wait", "--wait-timeout", "12s")
	if code != 0 || !strings.Contains(stdout, "2 nodes applied version 2 in ") {
		t.Fatalf("set-weight --wait with a hung replica: exit %d, stdout %q, stderr %q; want both nodes to apply version 2", code, stdout, stderr)
	}
	t.Logf("both nodes applied version 2 %v after the replica hung", time.Since(stopped).Round(time.Millisecond))
	for _, n := range []*haNode{n1, n2} {
		if v := n.version(); v != "2" {
			t.Errorf("%s runs version %q by its /status, want 2", n.id, v)
		}
	}
	if row := nodesTable(t, live.addr)["node-1"]; row["REPLICA"] != live.addr || row["APPLIED"] != "2" {
		t.Errorf("node-1 after the wait: %v; want it on %s at version 2", row, live.addr)
	}
}

// TestHADashboard: each replica's dashboard, in headless chromium, shows
// the traffic of the node that reports to it, and names the other
// replica for the node that reports there, beside its traffic and under
// the recent connections, which that replica keeps.
func TestHADashboard(t *testing.T) {
	binaries(t)
	ctx, pageErrors := browser(t)
	rs := startReplicas(t, etcdtest.Start(t), 2)
	n1 := startHANode(t, "node-1", rs[0], rs[1])
	n2 := startHANode(t, "node-2", rs[1], rs[0])
	v := applyVia(t, rs[0], clusterOnly(1))
	for _, n := range []*haNode{n1, n2} {
		waitFor(t, n.id+" to apply version "+fmt.Sprint(v), func() bool { return n.version() == fmt.Sprint(v) })
	}
	for i, r := range rs {
		here, there := "node-1", "node-2"
		if i == 1 {
			here, there = there, here
		}
		if err := chromedp.Do(ctx,
			chromedp.Navigate("http://"+r.http+"/"),
			chromedp.WaitVisible(`[data-node="`+there+`"] .replica`),
		); err != nil {
			t.Fatalf("dashboard of %s: %v (page errors: %q)", r.addr, err, pageErrors())
		}
		text := func(sel string) string {
			t.Helper()
			s, err := chromedp.Run(ctx, chromedp.Text(sel))
			if err != nil {
				t.Fatalf("dashboard of %s, text of %s: %v", r.addr, sel, err)
			}
			return strings.TrimSpace(s)
		}
		other := rs[1-i].addr
		if traffic, replica := text(`[data-node="`+there+`"] .traffic`), text(`[data-node="`+there+`"] .replica`); traffic != "reported to replica "+other || replica != other {
			t.Errorf("dashboard of %s, %s: traffic %q, replica %q; want reported to replica %s", r.addr, there, traffic, replica, other)
		}
		if own := text(`[data-node="` + here + `"] .traffic`); !strings.Contains(own, "active") {
			t.Errorf("dashboard of %s, %s: traffic %q, want its own rates and gauges", r.addr, here, own)
		}
		want := "Connections of nodes on replica " + other + " are kept there and not listed here; sluicectl conns lists every replica's."
		if note := text(`#conns-elsewhere`); note != want {
			t.Errorf("dashboard of %s, under recent connections: %q, want %q", r.addr, note, want)
		}
	}
	if errs := pageErrors(); len(errs) > 0 {
		t.Errorf("page errors: %q", errs)
	}
}

// TestHAEtcdReplaced: etcd is replaced by an empty one under two running
// replicas and a node. An apply through the replica the node is not on
// then reaches it: that replica numbers the version above those the node
// held (which the new etcd does not know), and the node's replica notices
// the new etcd and sends it. Before, the replicas went on watching the old
// etcd's revisions: the node kept routing to the old backend while
// apply --wait counted it as having applied the new version.
func TestHAEtcdReplaced(t *testing.T) {
	binaries(t)
	etcd := etcdtest.Start(t)
	rs := startReplicas(t, etcd, 2)
	a, b := startBackend(t, "a"), startBackend(t, "b")
	listen := freeAddr(t)
	snap := func(backend string) string { return webSnap(t, backend, listen) }
	n := startHANode(t, "node-1", rs...)
	waitFor(t, "node-1 to connect", func() bool { return len(nodesTable(t, rs[0].addr)) == 1 })
	apply := func(r *haReplica, be *backend, want uint64) {
		t.Helper()
		stdout, stderr, code := ctl(t, r.addr, "apply", "-f", snap(be.addr), "--wait")
		if line := fmt.Sprintf("1 node applied version %d", want); code != 0 || !strings.Contains(stdout, line) {
			t.Fatalf("apply --wait through %s: exit %d, stdout %q, stderr %q; want %q", r.addr, code, stdout, stderr, line)
		}
		if got := n.version(); got != fmt.Sprint(want) {
			t.Fatalf("node-1 runs version %q, want %d", got, want)
		}
		body, err := get(http.DefaultClient, "http://"+listen+"/")
		if err != nil || body != be.name {
			t.Fatalf("GET through node-1: %q, %v; want backend %s's answer", body, err, be.name)
		}
	}
	apply(rs[0], a, 1)
	apply(rs[0], b, 2)

	etcd.Replace(t)
	// The replicas' leases went with the old etcd: node-1's record is
	// written again once its replica's lease lapses (within a third of
	// its 30 s), and until then the other replica does not list it.
	waitFor(t, "replica 2 to list node-1 again", func() bool {
		stdout, _, code := ctl(t, rs[1].addr, "nodes")
		return code == 0 && strings.Contains(stdout, "node-1")
	})
	apply(rs[1], a, 3)
	apply(rs[0], b, 4)
	stdout, _, code := ctl(t, rs[0].addr, "history")
	if code != 0 || !strings.Contains(stdout, "\n3 ") || strings.Contains(stdout, "\n2 ") || strings.Contains(stdout, "\n1 ") {
		t.Errorf("history after the replacement (exit %d): want versions 3 and 4, none below:\n%s", code, stdout)
	}
}

// TestHAEtcdDownAsksEachListedReplica: with etcd down, a replica cannot
// read the other replicas' nodes, and lists only its own. sluicectl nodes
// and stats with --cp listing both replicas then ask each for its own, so
// the operator still sees both nodes, and says so (exit 1: a replica --cp
// does not list would not be asked).
func TestHAEtcdDownAsksEachListedReplica(t *testing.T) {
	binaries(t)
	etcd := etcdtest.Start(t)
	rs := startReplicas(t, etcd, 2)
	startHANode(t, "node-a", rs[0], rs[1])
	startHANode(t, "node-b", rs[1], rs[0])
	waitFor(t, "both nodes to connect", func() bool { return len(nodesTable(t, rs[0].addr)) == 2 })
	// Both nodes serve one TCP port (SO_REUSEPORT), so each has records.
	backend, listen := startBackend(t, "a"), freeAddr(t)
	v1 := fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - { name: public, address: %s, protocol: TCP, default_cluster: web }
`, backend.addr, listen)
	if out, errOut, code := ctl(t, rs[0].addr, "apply", "-f", writeFile(t, t.TempDir(), "v1.yaml", v1), "--wait"); code != 0 || !strings.Contains(out, "2 nodes applied version 1") {
		t.Fatalf("apply --wait: exit %d, %q %q", code, out, errOut)
	}
	both := rs[0].addr + "," + rs[1].addr
	web := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	const conns = 30
	for range conns {
		if body, err := get(web, "http://"+listen+"/"); err != nil || body != "a" {
			t.Fatalf("GET through the listener: %q, %v; want backend a's answer", body, err)
		}
	}
	waitFor(t, "stats of both nodes", func() bool {
		out, _, code := ctl(t, both, "stats")
		return code == 0 && strings.Count(out, "web/a ") == 2
	})
	// records lists the connection records conns gives through cps, by node.
	records := func(cps string) (by map[string]int, total int, errOut string, code int) {
		out, errOut, code := ctl(t, cps, "conns", "--limit", "1000", "-o", "json")
		var list struct {
			Records []struct {
				NodeID string `json:"node_id"`
			} `json:"records"`
		}
		json.Unmarshal([]byte(out), &list)
		by = map[string]int{}
		for _, r := range list.Records {
			by[r.NodeID]++
		}
		return by, len(list.Records), errOut, code
	}
	var before map[string]int
	waitFor(t, fmt.Sprintf("conns to list the %d connections", conns), func() bool {
		by, total, _, code := records(both)
		before = by
		return code == 0 && total == conns
	})
	if before["node-a"] == 0 || before["node-b"] == 0 {
		t.Fatalf("records by node %v: want both nodes to have served some of the %d connections", before, conns)
	}

	etcd.Stop()
	out, errOut, code := ctl(t, rs[0].addr, "nodes")
	if code != 1 || !strings.Contains(out, "node-a") || strings.Contains(out, "node-b") {
		t.Errorf("nodes through replica 1 alone with etcd down: exit %d, stdout %q, stderr %q; want exit 1 and node-a only", code, out, errOut)
	}
	asked := "so each replica --cp lists was asked for its own nodes: those of " + strings.Join(slices.Sorted(slices.Values([]string{rs[0].addr, rs[1].addr})), ", ") + " are listed"
	out, errOut, code = ctl(t, both, "nodes")
	if code != 1 || !strings.Contains(out, "node-a") || !strings.Contains(out, "node-b") || !strings.Contains(errOut, asked) {
		t.Errorf("nodes through both replicas with etcd down: exit %d, stdout %q, stderr %q; want exit 1, both nodes, and %q", code, out, errOut, asked)
	}
	out, errOut, code = ctl(t, both, "stats")
	if code != 1 || !strings.Contains(out, "node-a (connected") || !strings.Contains(out, "node-b (connected") || strings.Count(out, "web/a ") != 2 || !strings.Contains(errOut, asked) {
		t.Errorf("stats through both replicas with etcd down: exit %d, stdout %q, stderr %q; want exit 1, both nodes' endpoints, and %q", code, out, errOut, asked)
	}
	if by, total, errOut, code := records(rs[0].addr); code != 1 || total != before["node-a"] || by["node-b"] != 0 {
		t.Errorf("conns through replica 1 alone with etcd down: exit %d, records by node %v, stderr %q; want exit 1 and node-a's %d", code, by, errOut, before["node-a"])
	}
	if by, total, errOut, code := records(both); code != 1 || total != conns || !maps.Equal(by, before) || !strings.Contains(errOut, asked) {
		t.Errorf("conns through both replicas with etcd down: exit %d, records by node %v, stderr %q; want exit 1, %v, and %q", code, by, errOut, before, asked)
	}
}

// TestHAEtcdDown: with etcd gone, sluicectl's calls that need it fail
// within the control plane's bound on etcd (5 s), saying it is etcd that
// does not answer, rather than wait for sluicectl's own --timeout and
// blame the control plane. Reads of the current configuration (get,
// groups, the dashboard) answer with what the replica sends its nodes,
// and say so.
func TestHAEtcdDown(t *testing.T) {
	binaries(t)
	etcd := etcdtest.Start(t)
	r := startReplicas(t, etcd, 1)[0]
	dir := t.TempDir()
	if out, errOut, code := ctl(t, r.addr, "apply", "-f", writeFile(t, dir, "v1.yaml", clusterOnly(1))); code != 0 {
		t.Fatalf("apply: exit %d, %q %q", code, out, errOut)
	}
	// The replica reads the version it sends its nodes from etcd after the
	// apply: stopped before that, etcd would leave it nothing to show.
	waitFor(t, "the replica to publish version 1", func() bool {
		return promtext.Scrape(t, "http://"+r.http+"/metrics").Value("sluice_cp_snapshot_version") == 1
	})
	etcd.Stop()
	want := fmt.Sprintf("the configuration store cannot be reached: etcd (%s) did not answer within 5s", etcd.Endpoint)
	for _, args := range [][]string{
		{"apply", "-f", writeFile(t, dir, "v2.yaml", clusterOnly(2))},
		{"history"},
	} {
		// Waiting for etcd, sluicectl would give up after 30 s and
		// say the control plane did not answer.
		_, errOut, code := ctl(t, r.addr, append([]string{"--timeout", "30s"}, args...)...)
		if code != 1 || !strings.Contains(errOut, "sluicectl "+args[0]+": "+want) {
			t.Errorf("%s with etcd down: exit %d, stderr %q; want exit 1 and %q", args[0], code, errOut, want)
		}
	}
	// get and groups answer with the version the replica sends its nodes,
	// and say so.
	stale := fmt.Sprintf("the configuration store cannot be reached: etcd (%s) did not answer within 5s; shown is version 1, the one this control plane sends its nodes", etcd.Endpoint)
	out, errOut, code := ctl(t, r.addr, "--timeout", "30s", "get")
	if code != 1 || errOut != "sluicectl get: "+stale+"\n" || !strings.HasPrefix(out, "# version 1\n") || !strings.Contains(out, "name: web") {
		t.Errorf("get with etcd down: exit %d, stdout %q, stderr %q; want exit 1, version 1 with cluster web, and %q", code, out, errOut, stale)
	}
	out, errOut, code = ctl(t, r.addr, "--timeout", "30s", "groups")
	if code != 1 || errOut != "sluicectl groups: "+stale+"\n" || !strings.Contains(out, "\ndefault ") {
		t.Errorf("groups with etcd down: exit %d, stdout %q, stderr %q; want exit 1, group default, and %q", code, out, errOut, stale)
	}
	// A read of the fleet answers with this replica's nodes, and says
	// that it could not read the others'.
	out, errOut, code = ctl(t, r.addr, "nodes")
	want = "sluicectl nodes: the nodes of other control-plane replicas could not be read (etcd (" + etcd.Endpoint + ") did not answer within 2s); only those of " + r.addr + ", the replica that answered, are listed\n"
	if code != 1 || errOut != want || !strings.HasPrefix(out, "ID ") {
		t.Errorf("nodes with etcd down: exit %d, stdout %q, stderr %q; want exit 1, the table, and %q", code, out, errOut, want)
	}
	// The dashboard's views show the version the replica sends its nodes,
	// and say why, rather than fail.
	web := &http.Client{Timeout: 30 * time.Second}
	for _, path := range []string{"/api/fleet", "/api/clusters"} {
		resp, err := web.Get("http://" + r.http + path)
		if err != nil {
			t.Fatalf("GET %s with etcd down: %v", path, err)
		}
		var view struct {
			Version  uint64 `json:"version"`
			Stale    string `json:"stale"`
			Clusters []struct {
				Name string `json:"name"`
			} `json:"clusters"`
		}
		err = json.NewDecoder(resp.Body).Decode(&view)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || view.Version != 1 || view.Stale != stale ||
			(path == "/api/clusters" && (len(view.Clusters) != 1 || view.Clusters[0].Name != "web")) {
			t.Errorf("GET %s with etcd down: %d, %+v (%v); want 200, version 1, cluster web for /api/clusters, and stale %q", path, resp.StatusCode, view, err, stale)
		}
	}
	// And the page shows them, with a banner that says so.
	ctx, errs := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+r.http+"/"), chromedp.WaitVisible(`[data-cluster="web"]`)); err != nil {
		t.Fatalf("dashboard with etcd down: %v", err)
	}
	banner, err := chromedp.Run(ctx, chromedp.Text(`#banner`))
	if err != nil {
		t.Fatalf("dashboard banner with etcd down: %v", err)
	}
	if want := "Configuration store unreachable: " + stale + "."; !strings.HasPrefix(banner, want) {
		t.Errorf("dashboard banner with etcd down: %q, want it to start %q", banner, want)
	}
	// The versions are the store's alone: their section says why it
	// has none, and that read's 503 is the one error the page logs.
	var versions string
	waitFor(t, "the versions section to say the store is away", func() bool {
		versions, err = chromedp.Run(ctx, chromedp.Text(`#versions`))
		return err == nil && strings.HasPrefix(versions, "Cannot read the stored versions: ")
	})
	if want := "etcd (" + etcd.Endpoint + ") did not answer within 5s"; !strings.Contains(versions, want) {
		t.Errorf("the versions section says %q with etcd down; want it to name %q", versions, want)
	}
	for _, e := range errs() {
		if !strings.Contains(e, "status of 503") || !strings.HasSuffix(e, "/api/versions?limit=10&max_changes=3") {
			t.Errorf("the dashboard logged an error with etcd down: %q", e)
		}
	}
}

// TestHAReplicaNameTaken: a replica started with the name of a live one on
// the same etcd and prefix exits, naming the holder, where it used to run
// beside it: each took the other's node records for its own, so neither
// listed the other's nodes, and commands for them went astray. The holder
// keeps serving.
func TestHAReplicaNameTaken(t *testing.T) {
	etcd := etcdtest.Start(t)
	r := startReplicas(t, etcd, 1, "--replica", "cp-a")[0]
	second := start(t, "sluice-cp", "--etcd", etcd.Endpoint, "--etcd-prefix", haPrefix(t),
		"--listen", freeAddr(t), "--http", "", "--replica", "cp-a")
	// It waits to see the holder renew its lease (every 10 s), in case
	// the holder died, rather than for the lease to expire (30 s).
	began := time.Now()
	select {
	case <-second.exited:
	case <-time.After(25 * time.Second):
		t.Fatalf("a second replica named cp-a still runs after 25s:\n%s", second.out)
	}
	t.Logf("the second replica named cp-a exited after %v", time.Since(began).Round(time.Millisecond))
	out := second.out.String()
	for _, want := range []string{
		`msg="cannot start"`,
		`another replica named \"cp-a\" uses this etcd and prefix (listening on ` + r.addr + `, pid `,
		"give each replica its own name (--replica)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the second replica's output lacks %q:\n%s", want, out)
		}
	}
	if code := second.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("the second replica exited with status %d, want 1", code)
	}
	if _, _, code := ctl(t, r.addr, "nodes"); code != 0 {
		t.Errorf("sluicectl nodes on the holder after the refusal: exit %d, want 0", code)
	}

	// The holder dies; restarted at its address, it cannot have a live
	// namesake there, so it takes its name at once rather than wait for
	// the dead one's lease (30 s).
	r.kill(t)
	restarted := time.Now()
	start(t, "sluice-cp", "--etcd", etcd.Endpoint, "--etcd-prefix", haPrefix(t),
		"--listen", r.addr, "--http", r.http, "--replica", "cp-a")
	waitFor(t, "the restarted replica to serve", func() bool {
		resp, err := http.Get("http://" + r.http + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	if took := time.Since(restarted); took > 5*time.Second {
		t.Errorf("the replica restarted at its address served after %v, want well before its old lease expired (30s)", took)
	}
}

// TestHAStopWithEtcdDown: replicas whose etcd is gone still stop on
// SIGTERM, as a restart during an etcd outage needs. The one not elected
// used to hang for good: etcd's election, cancelled, resigns with the
// client's own context, which waits for etcd.
func TestHAStopWithEtcdDown(t *testing.T) {
	binaries(t)
	etcd := etcdtest.Start(t)
	rs := startReplicas(t, etcd, 2)
	etcd.Stop()
	for _, r := range rs {
		start := time.Now()
		r.proc.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.proc.exited:
		case <-time.After(testTimeout):
			t.Fatalf("replica %s still running %v after SIGTERM, with etcd gone", r.addr, testTimeout)
		}
		if code := r.proc.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("replica %s exited %d after %v, want 0\n%s", r.addr, code, time.Since(start), r.proc.out.String())
		}
	}
}

// TestHAReplicasDisagree: a replica started with another token key than
// a live replica on the same etcd says so at its start, as an error
// naming both keys' ids and what to do; one with none says the same of
// its missing key. Tokens made through one would be refused by the
// other, and a replica without a key lets in whoever reaches it.
func TestHAReplicasDisagree(t *testing.T) {
	binaries(t)
	etcd := etcdtest.Start(t)
	dir := t.TempDir()
	keys := map[string]*auth.Key{}
	for _, name := range []string{"a.key", "b.key"} {
		k, _, err := auth.LoadOrCreateKey(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = k
	}
	first := startReplicas(t, etcd, 1, "--token-key", filepath.Join(dir, "a.key"))[0]
	second := startReplicas(t, etcd, 1, "--token-key", filepath.Join(dir, "b.key"))[0]
	third := startReplicas(t, etcd, 1)[0]
	for _, tc := range []struct {
		r    *haReplica
		want []string
	}{
		{second, []string{fmt.Sprintf(`replica %s has token key \"%s\", this one \"%s\": a token made through one is refused by the other, and one without a token key lets in whoever reaches it; give every replica the same --token-key file`,
			first.addr, keys["a.key"].ID(), keys["b.key"].ID())}},
		{third, []string{
			fmt.Sprintf(`replica %s has token key \"%s\", this one \"off\"`, first.addr, keys["a.key"].ID()),
			fmt.Sprintf(`replica %s has token key \"%s\", this one \"off\"`, second.addr, keys["b.key"].ID()),
		}},
	} {
		waitFor(t, "sluice-cp "+tc.r.addr+" to log its disagreements", func() bool {
			for _, w := range tc.want {
				if !strings.Contains(tc.r.proc.out.String(), "level=ERROR msg=\""+w) {
					return false
				}
			}
			return true
		})
	}

	// sluicectl replicas, through the third, lists all three with their
	// token keys, and says on stderr what the third disagrees with.
	stdout, stderr, code := ctl(t, third.addr, "replicas")
	got := map[string]string{}
	for _, r := range tableRows(stdout)[1:] {
		if len(r) >= 6 {
			got[r[0]] = r[1] + " " + r[4]
		}
	}
	want := map[string]string{
		first.addr:                 "0 " + keys["a.key"].ID(),
		second.addr:                "0 " + keys["b.key"].ID(),
		third.addr + " (answered)": "0 off",
	}
	if code != 1 || !maps.Equal(got, want) {
		t.Errorf("replicas: exit %d, rows (nodes, token key) %v; want exit 1 and %v\n%s", code, got, want, stdout)
	}
	for _, w := range []string{
		fmt.Sprintf(`sluicectl replicas: replica %s has token key "%s", replica %s "off": a token made through one is refused by the other`, first.addr, keys["a.key"].ID(), third.addr),
		fmt.Sprintf(`sluicectl replicas: replica %s has token key "%s", replica %s "off"`, second.addr, keys["b.key"].ID(), third.addr),
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("replicas: stderr %q lacks %q", stderr, w)
		}
	}
	// The third's dashboard shows them in its banner.
	var fleet struct {
		Disagreements []string `json:"disagreements"`
	}
	body, err := get(&http.Client{Timeout: testTimeout}, "http://"+third.http+"/api/fleet")
	err = cmp.Or(err, json.Unmarshal([]byte(body), &fleet))
	for _, r := range []struct {
		addr, key string
	}{{first.addr, keys["a.key"].ID()}, {second.addr, keys["b.key"].ID()}} {
		prefix := fmt.Sprintf(`replica %s has token key "%s", replica %s "off"`, r.addr, r.key, third.addr)
		if err != nil || len(fleet.Disagreements) != 2 || !slices.ContainsFunc(fleet.Disagreements, func(d string) bool { return strings.HasPrefix(d, prefix) }) {
			t.Errorf("the third's /api/fleet: disagreements %q (%v); want two, one of them %q", fleet.Disagreements, err, prefix)
		}
	}
}

// TestHARevokeThroughAnotherReplica: a node revoked through one replica is
// cut off by the replica it is on, which learns of it from etcd, and a new
// certificate lets it back there.
func TestHARevokeThroughAnotherReplica(t *testing.T) {
	binaries(t)
	etcd := etcdtest.Start(t)
	dir := t.TempDir()
	pkiDir, nodeDir := filepath.Join(dir, "pki"), filepath.Join(dir, "n1")
	p := func(n string) string { return filepath.Join(pkiDir, n) }
	if out, errOut, code := runBin(t, nil, "sluice-cp", "init-ca", "--dir", pkiDir); code != 0 {
		t.Fatalf("init-ca: exit %d\n%s%s", code, out, errOut)
	}
	var addrs []string
	for range 2 {
		addr := freeAddr(t)
		start(t, "sluice-cp", "--etcd", etcd.Endpoint, "--etcd-prefix", haPrefix(t), "--listen", addr, "--http", "",
			"--tls-cert", p("server.crt"), "--tls-key", p("server.key"), "--ca-cert", p("ca.crt"), "--ca-key", p("ca.key"))
		waitListening(t, "sluice-cp", addr)
		addrs = append(addrs, addr)
	}
	through := func(addr string, args ...string) (string, string, int) {
		t.Helper()
		return runBin(t, []string{"SLUICE_CP=" + addr, "SLUICE_CA=" + p("ca.crt")}, "sluicectl", args...)
	}
	issue := func() {
		t.Helper()
		if out, errOut, code := through(addrs[0], "cert", "issue", "--node", "n1", "--out", nodeDir); code != 0 {
			t.Fatalf("cert issue: exit %d\n%s%s", code, out, errOut)
		}
	}
	issue()
	first, _, err := pki.LoadCert(filepath.Join(nodeDir, "n1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(first.NotBefore.Add(pki.Backdate + time.Second))) // revocations count whole seconds
	node := start(t, "sluice-dp", "--cp", addrs[1], "--ca", filepath.Join(nodeDir, "ca.crt"),
		"--cert", filepath.Join(nodeDir, "n1.crt"), "--key", filepath.Join(nodeDir, "n1.key"), "--admin", "")
	state := func() string {
		out, _, _ := through(addrs[0], "nodes")
		for _, r := range tableRows(out) {
			if len(r) == 8 && r[0] == "n1" {
				return r[3] + " " + r[4]
			}
		}
		return out
	}
	waitFor(t, "n1 to connect to the second replica", func() bool { return state() == "connected "+addrs[1] })
	// replicas counts n1 on the second, asked of either.
	for i, addr := range addrs {
		out, _, _ := through(addr, "replicas")
		nodes := map[string]string{}
		for _, r := range tableRows(out)[1:] {
			nodes[strings.TrimSuffix(r[0], " (answered)")] = r[1]
		}
		if want := map[string]string{addrs[0]: "0", addrs[1]: "1"}; !maps.Equal(nodes, want) {
			t.Errorf("replicas through replica %d: nodes %v, want %v\n%s", i, nodes, want, out)
		}
	}
	// A version before the revocation, which the second replica publishes
	// first.
	snapFile := writeFile(t, dir, "snap.yaml", "clusters: [{ name: web, endpoints: [{ name: a, address: \"127.0.0.1:9\" }] }]\n")
	if out, errOut, code := through(addrs[0], "apply", "-f", snapFile, "--wait"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	time.Sleep(time.Second) // the replicas look for a new version every 250 ms

	if out, errOut, code := through(addrs[0], "cert", "revoke", "--node", "n1"); code != 0 {
		t.Fatalf("cert revoke through the first replica: exit %d\n%s%s", code, out, errOut)
	}
	waitFor(t, "the second replica to cut n1 off", func() bool {
		return strings.HasPrefix(state(), "disconnected") && strings.Contains(node.out.String(), "node n1's certificate was revoked at ")
	})
	issue()
	waitFor(t, "n1 back on the second replica with a new certificate", func() bool { return state() == "connected "+addrs[1] })
}
