package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestCanaryRollout: apply --canary sends a version to one node of four
// first. Canaries that run it cleanly for the window promote it to all;
// canaries answering 5xx halt it, go back to the group's version, and the
// rest of the group never sees it; a canary's window counts only what it
// sent with the new version; bad shares are refused.
func TestCanaryRollout(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	good := startBackend(t, "good")
	failing := errorBackend(t, http.StatusInternalServerError, "broken")

	labels := map[string]string{"role": "web"}
	canary := startLabelledNode(t, c.addr, "a-canary", labels) // sorts first: the one canary
	others := []*fakeNode{
		startFakeNode(t, c.addr, "b-node", labels, true),
		startFakeNode(t, c.addr, "c-node", labels, true),
		startFakeNode(t, c.addr, "d-node", labels, true),
	}
	listen := freeAddr(t)
	snap := func(backend string, weight int) string {
		return writeFile(t, t.TempDir(), "snap.yaml", fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s, weight: %d }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, backend, weight, listen))
	}
	if _, stderr, code := ctl(t, c.addr, "apply", "-f", snap(good.addr, 1), "--wait"); code != 0 {
		t.Fatalf("first apply: exit %d: %s", code, stderr)
	}

	for _, tc := range []struct {
		share string
		code  int
		want  string
	}{
		// No share at all is a usage error; more nodes than the group has,
		// the control plane's refusal.
		{"0%", 2, "sluicectl apply: --canary 0%: want a percent from 1% to 100% of the group"},
		{"150%", 2, "sluicectl apply: --canary 150%: want a percent from 1% to 100% of the group"},
		{"5", 1, "a canary of 5 nodes, but group default has 4 connected; nothing stored"},
	} {
		if _, stderr, code := ctl(t, c.addr, "apply", "-f", snap(good.addr, 2), "--canary", tc.share); code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("apply --canary %s: exit %d, stderr %q; want %d and %q", tc.share, code, stderr, tc.code, tc.want)
		}
	}

	// A clean canary: promoted after its window, then every node runs it.
	stdout, stderr, code := ctl(t, c.addr, "apply", "-f", snap(good.addr, 2), "--canary", "25%", "--canary-window", "1s", "--wait")
	if code != 0 || !strings.Contains(stdout, "+ rollout default: canary to a-canary of 4 nodes") ||
		!strings.Contains(stdout, "the canaries passed: version 3 goes to every node") || !strings.Contains(stdout, "4 nodes applied version 3\n") {
		t.Fatalf("apply --canary 25%% --wait: exit %d\nstdout:\n%s\nstderr: %s", code, stdout, stderr)
	}
	for i, n := range others {
		if got := strings.Join(n.got(), ","); got != "1,3" {
			t.Errorf("node %d got versions %s; want 1 then the promoted 3, never the canary's 2", i, got)
		}
	}

	// traffic sends a request to the listener every 20 ms until stopped.
	traffic := func() (stop func()) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
				get(http.DefaultClient, "http://"+listen+"/")
			}
		})
		return func() { close(done); wg.Wait() }
	}

	// A failing canary: its 5xx halt the rollout, and it goes back.
	stop := traffic()
	stdout, stderr, code = ctl(t, c.addr, "apply", "-f", snap(failing, 2), "--canary", "1", "--canary-window", "20s", "--wait")
	stop()
	if code != 2 || !strings.Contains(stderr, "the rollout of version 4 halted: canary error rate ") || !strings.Contains(stderr, "is above 5%") {
		t.Fatalf("apply of a failing canary --wait: exit %d\nstdout:\n%s\nstderr: %s", code, stdout, stderr)
	}
	// Every request the canary sent to the failing backend failed; one in
	// flight when the canary switched may have been answered by the good
	// one, and still count in the window.
	m := haltRate.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("the halt does not give the rate as \"canary error rate R%% (E errors in N requests\": %s", stderr)
	}
	if errs, reqs := atoi(t, m[1]), atoi(t, m[2]); reqs == 0 || errs < reqs-1 {
		t.Errorf("the halt counted %d errors in %d requests; want all but at most one in flight: %s", errs, reqs, stderr)
	}
	waitVersion(t, canary, 3)
	if body, err := get(http.DefaultClient, "http://"+listen+"/"); err != nil || body != "good" {
		t.Errorf("after the halt the canary answers %q, %v; want the good backend", body, err)
	}
	for i, n := range others {
		if got := strings.Join(n.got(), ","); got != "1,3" {
			t.Errorf("node %d got versions %s; the halted version 4 must not reach it", i, got)
		}
	}
	stdout, _, _ = ctl(t, c.addr, "rollout", "status")
	if !strings.Contains(stdout, "group default: rollout of version 4, halted: "+m[0]) || !strings.Contains(stdout, "a-canary  connected  3") {
		t.Errorf("rollout status after the halt:\n%s", stdout)
	}
	// get prints the group's snapshot, and says where the rollout's is.
	stdout, _, _ = ctl(t, c.addr, "get")
	if lines := strings.SplitN(stdout, "\n", 3); len(lines) < 3 || !strings.HasPrefix(lines[0], "# version 3") ||
		!strings.HasPrefix(lines[1], "# the rollout of version 4 halted ("+m[0]) ||
		!strings.HasSuffix(lines[1], "): its canaries run this snapshot again; get --version 4 prints the rollout's") ||
		strings.Contains(stdout, failing) {
		t.Errorf("get during a halted rollout:\n%s", stdout)
	}
	if stdout, _, _ = ctl(t, c.addr, "get", "--version", "4"); !strings.HasPrefix(stdout, "# version 4") || !strings.Contains(stdout, failing) {
		t.Errorf("get --version 4, the rollout's:\n%s", stdout)
	}
	// Scripts read the window's figures of the halt, as its reason says them.
	stdout, _, _ = ctl(t, c.addr, "rollout", "status", "-o", "json")
	var halted struct {
		Requests  string  `json:"requests"`
		ErrorRate float64 `json:"error_rate"`
	}
	if err := json.Unmarshal([]byte(stdout), &halted); err != nil || halted.Requests != m[2] || halted.ErrorRate <= 0.05 {
		t.Errorf("rollout status -o json after the halt: requests %q, error_rate %v (%v); want %s requests, a rate above 5%%:\n%s", halted.Requests, halted.ErrorRate, err, m[2], stdout)
	}
	if _, stderr, code := ctl(t, c.addr, "apply", "-f", snap(good.addr, 3)); code != 1 || !strings.Contains(stderr, "group default has a rollout of version 4 (halted); finish it, or end it with \"sluicectl rollout abort\", first") {
		t.Errorf("apply during a halted rollout: exit %d, %s", code, stderr)
	}
	stdout, stderr, code = ctl(t, c.addr, "rollout", "abort")
	if code != 0 || !strings.Contains(stdout, "group default: no rollout") {
		t.Errorf("rollout abort: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, stderr, code := ctl(t, c.addr, "apply", "-f", snap(good.addr, 3), "--wait"); code != 0 {
		t.Errorf("apply after the abort: exit %d: %s", code, stderr)
	}

	// A canary that fixes a failing version: the 5xx the old version
	// answered until the canary switched are not the canary's, even when
	// the node reports them after its ACK, and do not halt the fix.
	if _, stderr, code := ctl(t, c.addr, "apply", "-f", snap(failing, 4), "--wait"); code != 0 {
		t.Fatalf("apply of the failing backend: exit %d: %s", code, stderr)
	}
	stop = traffic()
	time.Sleep(time.Second) // a second of 5xx, some not reported yet at the switch
	stdout, stderr, code = ctl(t, c.addr, "apply", "-f", snap(good.addr, 5), "--canary", "1", "--canary-window", "2s", "--wait")
	stop()
	if code != 0 || !strings.Contains(stdout, "the canaries passed: version ") {
		t.Errorf("apply --canary of the fix --wait: exit %d\nstdout:\n%s\nstderr: %s", code, stdout, stderr)
	}
	if body, err := get(http.DefaultClient, "http://"+listen+"/"); err != nil || body != "good" {
		t.Errorf("after the fix the listener answers %q, %v; want the good backend", body, err)
	}

	// A window without traffic tells nothing: with --canary-min-requests
	// it halts rather than pass.
	stdout, stderr, code = ctl(t, c.addr, "apply", "-f", snap(good.addr, 6), "--canary", "1", "--canary-window", "1s", "--canary-min-requests", "50", "--wait")
	// The window is checked every 500ms: it may end up to then after 1s.
	want := regexp.MustCompile(`halted: the canaries served 0 requests over [12]s, fewer than the 50 the rollout needs \(min_requests\) to judge their error rate`)
	if code != 2 || !strings.Contains(stdout, "for 1s under 5% errors, over at least 50 requests") || !want.MatchString(stderr) {
		t.Errorf("apply --canary --canary-min-requests 50 --wait without traffic: exit %d\nstdout:\n%s\nstderr: %s\nwant exit 2 and %s", code, stdout, stderr, want)
	}
	if stdout, _, _ := ctl(t, c.addr, "rollout", "status"); !strings.Contains(stdout, "window 1s, error limit 5%, at least 50 requests") {
		t.Errorf("rollout status of a rollout that wants 50 requests:\n%s", stdout)
	}
	if _, stderr, code := ctl(t, c.addr, "rollout", "abort"); code != 0 {
		t.Errorf("rollout abort: exit %d: %s", code, stderr)
	}

	// An endpoint that resets every request it is sent answers nothing
	// itself: the clients get the node's 502s, which count as its 5xx and
	// halt the rollout as its own would.
	resetting := resetBackend(t)
	stop = traffic()
	stdout, stderr, code = ctl(t, c.addr, "apply", "-f", snap(resetting, 7), "--canary", "1", "--canary-window", "20s", "--wait")
	stop()
	if code != 2 || !strings.Contains(stderr, "halted: canary error rate ") {
		t.Errorf("apply --canary of an endpoint that resets --wait: exit %d\nstdout:\n%s\nstderr: %s\nwant exit 2 and a halt for the error rate", code, stdout, stderr)
	}
	if _, stderr, code := ctl(t, c.addr, "rollout", "abort"); code != 0 {
		t.Errorf("rollout abort: exit %d: %s", code, stderr)
	}
}

// resetBackend returns the address of an HTTP server that resets the
// connection of every request it reads.
func resetBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// haltRate is the figures of a halted rollout's reason.
var haltRate = regexp.MustCompile(`canary error rate [0-9.]+% \(([0-9]+) errors in ([0-9]+) requests`)

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCanaryRefusalAfterRestart: a canary that refuses a version (a port
// it cannot bind) halts the rollout; after the abort, sluicectl nodes keeps
// showing the refusal, as its help says (no newer version applied since),
// which tells why the rollout ended. Once the node restarts, its new
// process has refused nothing: nodes shows no refusal, and an apply --wait
// of the group's version does not take the node for one that refused it.
func TestCanaryRefusalAfterRestart(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	be := startBackend(t, "good")
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	dir := t.TempDir()
	base := fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, be.addr, freeAddr(t))
	good := writeFile(t, dir, "good.yaml", base)
	bad := writeFile(t, dir, "bad.yaml", base+fmt.Sprintf("  - { name: taken, address: %s, protocol: TCP, default_cluster: web }\n", held.Addr()))

	// The canary (first by id) is stopped by the test; the cleanup stops
	// whichever process runs last.
	startCanary := func() (stop func()) { return stoppableNode(t, c.addr, "a-canary") }
	stopCanary := startCanary()
	startNode(t, c.addr, "b-node")
	waitFor(t, "both nodes to connect", func() bool {
		return c.nodeStatus(t, "a-canary").GetConnected() && c.nodeStatus(t, "b-node").GetConnected()
	})
	if stdout, stderr, code := ctl(t, c.addr, "apply", "-f", good, "--wait"); code != 0 || !strings.Contains(stdout, "2 nodes applied version 1 ") {
		t.Fatalf("first apply: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	const refusal = "listener taken: listen tcp "
	stdout, stderr, code := ctl(t, c.addr, "apply", "-f", bad, "--canary", "1", "--wait")
	if code != 2 || !strings.Contains(stderr, "the rollout of version 2 halted: canary a-canary refused version 2: "+refusal) {
		t.Fatalf("apply --canary 1 of a version the canary refuses: exit %d\nstdout:\n%s\nstderr: %s", code, stdout, stderr)
	}
	if stdout, stderr, code := ctl(t, c.addr, "rollout", "abort"); code != 0 || !strings.Contains(stdout, "group default: no rollout") {
		t.Fatalf("rollout abort: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	row := func(id string) []string {
		r, out := nodesRow(t, c.addr, id)
		if r == nil {
			t.Fatalf("sluicectl nodes has no row of 7 columns for %s:\n%s", id, out)
		}
		return r
	}
	if r := row("a-canary"); r[1] != "connected" || r[2] != "1" || r[3] != "1" || !strings.HasPrefix(r[4], "v2: "+refusal) {
		t.Errorf("nodes after the abort: ID, STATE, APPLIED, SENT, LAST-NACK = %q; want the canary back on 1, its refusal of 2 shown", r)
	}

	stopCanary()
	startCanary()
	var r []string
	waitFor(t, "the restarted canary to apply version 1", func() bool {
		r = row("a-canary")
		return r[1] == "connected" && r[2] == "1"
	})
	if want := []string{"a-canary", "connected", "1", "1", "-"}; !slices.Equal(r, want) {
		t.Errorf("nodes after the canary restarted: ID, STATE, APPLIED, SENT, LAST-NACK = %q, want %q: the new process refused nothing", r, want)
	}
	if stdout, stderr, code := ctl(t, c.addr, "apply", "-f", good, "--wait"); code != 0 || !strings.Contains(stdout, "2 nodes applied version 1") {
		t.Errorf("apply --wait of the group's version after the restart: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// stoppableNode starts node id, which the test may stop (stop may be
// called again; the cleanup calls it too).
func stoppableNode(t *testing.T, cpAddr, id string) (stop func()) {
	t.Helper()
	dp, err := dataplane.Start(dataplane.Options{
		ControlPlane: cpAddr,
		Node:         &sluicev1.Node{Id: id},
		Logger:       quietLogger(),
		MinBackoff:   20 * time.Millisecond,
		MaxBackoff:   200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var once sync.Once
	stop = func() { once.Do(dp.Close) }
	t.Cleanup(stop)
	return stop
}

// TestDeadCanaryHaltsItsRollout: a canary that goes away for good leaves
// the rollout nothing to watch; past --canary-deadline it halts, saying
// what it waited for, and apply --wait exits 2 with that reason rather
// than waiting for a node that will not come back. The rest of the group
// never saw the version; after an abort the group takes applies again.
func TestDeadCanaryHaltsItsRollout(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	dir := t.TempDir()
	listen := freeAddr(t)
	snap := func(be *backend, name string) string {
		return writeFile(t, dir, name, fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: e, address: %s }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, be.addr, listen))
	}
	one, two := snap(a, "one.yaml"), snap(b, "two.yaml")
	stopCanary := stoppableNode(t, c.addr, "a-canary")
	startNode(t, c.addr, "b-node")
	waitFor(t, "both nodes to connect", func() bool {
		return c.nodeStatus(t, "a-canary").GetConnected() && c.nodeStatus(t, "b-node").GetConnected()
	})
	if stdout, stderr, code := ctl(t, c.addr, "apply", "-f", one, "--wait"); code != 0 || !strings.Contains(stdout, "2 nodes applied version 1 ") {
		t.Fatalf("first apply: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	type result struct {
		stdout, stderr string
		code           int
	}
	done := make(chan result, 1)
	go func() {
		stdout, stderr, code := ctl(t, c.addr, "apply", "-f", two, "--canary", "1", "--canary-window", "1h", "--canary-deadline", "2s", "--wait", "--wait-timeout", "20s")
		done <- result{stdout, stderr, code}
	}()
	waitFor(t, "the canary to apply version 2", func() bool { return c.nodeStatus(t, "a-canary").GetAckedVersion() == 2 })
	stopCanary()
	const reason = "no progress for 2s (the progress deadline): waiting for a canary to connect"
	select {
	case r := <-done:
		if r.code != 2 || !strings.Contains(r.stderr, "the rollout of version 2 halted: "+reason) {
			t.Errorf("apply --canary --wait with the canary gone: exit %d\nstdout:\n%s\nstderr: %s\nwant exit 2 and the halt for the deadline", r.code, r.stdout, r.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("apply --wait did not end")
	}
	if stdout, _, _ := ctl(t, c.addr, "rollout", "status"); !strings.Contains(stdout, "group default: rollout of version 2, halted: "+reason) ||
		!strings.Contains(stdout, "progress deadline 2s") {
		t.Errorf("rollout status after the halt:\n%s", stdout)
	}
	if got := c.nodeStatus(t, "b-node").GetAckedVersion(); got != 1 {
		t.Errorf("b-node runs version %d; want 1: the rest of the group never gets a halted rollout", got)
	}
	if _, stderr, code := ctl(t, c.addr, "rollout", "abort"); code != 0 {
		t.Fatalf("rollout abort: exit %d: %s", code, stderr)
	}
	if stdout, stderr, code := ctl(t, c.addr, "apply", "-f", two, "--wait"); code != 0 || !strings.Contains(stdout, "1 node applied version ") {
		t.Errorf("apply --wait after the abort: exit %d, stdout %q, stderr %q; want the node left to apply it", code, stdout, stderr)
	}
}
