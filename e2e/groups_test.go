package e2e

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// startLabelledNode starts a dataplane node with labels.
func startLabelledNode(t *testing.T, cpAddr, id string, labels map[string]string) *dataplane.Dataplane {
	t.Helper()
	dp, err := dataplane.Start(dataplane.Options{
		ControlPlane: cpAddr,
		Node:         &sluicev1.Node{Id: id, Labels: labels},
		Logger:       quietLogger(),
		MinBackoff:   20 * time.Millisecond,
		MaxBackoff:   200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	t.Cleanup(dp.Close)
	return dp
}

// TestNodeGroups: edge and core nodes run different snapshots chosen by
// their labels; each apply reaches only its group; sluicectl shows who is
// where; selectors that would put a node in two groups, or that do not
// parse, are refused and store nothing.
func TestNodeGroups(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	core, edge := startBackend(t, "core-backend"), startBackend(t, "edge-backend")
	coreNode := startLabelledNode(t, c.addr, "core-1", map[string]string{"role": "core"})
	edgeNode := startLabelledNode(t, c.addr, "edge-1", map[string]string{"role": "edge", "zone": "a"})
	coreAddr, edgeAddr := freeAddr(t), freeAddr(t)
	snap := func(backend, listen string) string {
		return writeFile(t, t.TempDir(), "snap.yaml", fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, backend, listen))
	}

	// Before anything is applied, the nodes are in the catch-all default.
	for _, id := range []string{"core-1", "edge-1"} {
		waitFor(t, id+" in group default", func() bool { return c.nodeStatus(t, id).GetGroup() == "default" })
	}
	stdout, stderr, code := ctl(t, c.addr, "group", "set", "edge", "--selector", "role=edge")
	if want := `  + group edge: selector "role=edge"; takes connected node edge-1 from default; ` +
		"nothing is applied to it yet: the nodes it takes keep what they run until an apply --group edge\n"; code != 0 ||
		!strings.Contains(stdout, "applied version 1 to group edge") || !strings.Contains(stdout, want) {
		t.Fatalf("group set edge: exit %d, stdout %q, stderr %q; want the line %q", code, stdout, stderr, want)
	}
	// get says so too, above the empty snapshot, written as apply takes it.
	for _, args := range [][]string{{"get", "--group", "edge"}, {"get", "--version", "1"}} { // version 1 made edge
		if stdout, stderr, code = ctl(t, c.addr, args...); code != 0 || stdout != "# version 0: nothing is applied to group edge yet\nclusters: []\n" {
			t.Errorf("%q before an apply to edge: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	stdout, stderr, code = ctl(t, c.addr, "apply", "-f", snap(core.addr, coreAddr), "--wait")
	if code != 0 || !strings.Contains(stdout, "applied version 2\n") || !strings.Contains(stdout, "1 node applied version 2 in ") {
		t.Fatalf("apply to default: exit %d, stdout %q, stderr %q; want version 2 applied by its 1 node", code, stdout, stderr)
	}
	stdout, stderr, code = ctl(t, c.addr, "apply", "-f", snap(edge.addr, edgeAddr), "--group", "edge", "--wait")
	if code != 0 || !strings.Contains(stdout, "applied version 3 to group edge") || !strings.Contains(stdout, "1 node of group edge applied version 3 in ") {
		t.Fatalf("apply to edge: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	waitVersion(t, coreNode, 2)
	waitVersion(t, edgeNode, 3)
	// A dry run names the group it would write to, as the write does.
	stdout, stderr, code = ctl(t, c.addr, "set-weight", "web/a", "3", "--group", "edge", "--dry-run")
	if code != 0 || !strings.HasPrefix(stdout, "dry run: would apply version 4 to group edge\n") {
		t.Errorf("set-weight --group edge --dry-run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, _, _ = ctl(t, c.addr, "rollback", "3", "--dry-run")
	if stdout != "dry run: unchanged (version 3, group edge)\n" {
		t.Errorf("rollback 3 --dry-run (group edge's version, which it runs): %q", stdout)
	}
	// get --version 3 means group edge's too, and its header says so, as
	// applying the file back needs --group edge.
	for _, args := range [][]string{{"get", "--version", "3"}, {"get", "--group", "edge"}} {
		stdout, stderr, code = ctl(t, c.addr, args...)
		if code != 0 || !strings.HasPrefix(stdout, "# version 3 of group edge, ") || !strings.Contains(stdout, edge.addr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want edge's version 3, named so", args, code, stdout, stderr)
		}
	}
	for _, tc := range []struct{ addr, want string }{{coreAddr, "core-backend"}, {edgeAddr, "edge-backend"}} {
		if body, err := get(http.DefaultClient, "http://"+tc.addr+"/"); err != nil || body != tc.want {
			t.Errorf("GET via %s = %q, %v; want %q", tc.addr, body, err, tc.want)
		}
	}

	// A node whose labels would match two groups, and one that no group
	// takes once default stops being the catch-all.
	startFakeNode(t, c.addr, "edge-b", map[string]string{"role": "edge", "zone": "b"}, false)
	waitFor(t, "edge-b in group edge", func() bool { return c.nodeStatus(t, "edge-b").GetGroup() == "edge" })
	_, stderr, code = ctl(t, c.addr, "group", "set", "zone-b", "--selector", "zone=b")
	if code != 1 || !strings.Contains(stderr, "node edge-b would be in two groups: its labels match groups edge and zone-b") {
		t.Errorf("group set zone-b overlapping edge: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = ctl(t, c.addr, "apply", "-f", snap(edge.addr, edgeAddr), "--group", "lab", "--selector", "zone in a")
	if code != 1 || !strings.Contains(stderr, "sluicectl apply: the control plane refused the request (1 fault):\n"+`selector: selector "zone in a": at offset 8: expected '(' and a list of values`) {
		t.Errorf("apply with a malformed selector: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = ctl(t, c.addr, "apply", "-f", snap(edge.addr, edgeAddr), "--group", "lab")
	if code != 1 || !strings.Contains(stderr, `group "lab" does not exist (the groups are: default, edge); give a selector to create it`) {
		t.Errorf("apply to a missing group: exit %d, stderr %q", code, stderr)
	}
	if stdout, _, _ := ctl(t, c.addr, "history"); strings.Count(stdout, "\n") != 4 {
		t.Errorf("refused writes stored versions; history:\n%s", stdout)
	}

	if _, stderr, code := ctl(t, c.addr, "group", "set", "default", "--selector", "role=core"); code != 0 {
		t.Fatalf("group set default: exit %d, %s", code, stderr)
	}
	// Deleting default would leave core-1 in no group.
	_, stderr, code = ctl(t, c.addr, "group", "delete", "default")
	if want := "sluicectl group delete: connected node core-1 of group default would be in no group"; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("group delete default: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
	startFakeNode(t, c.addr, "stray", map[string]string{"role": "lab"}, false)
	waitFor(t, "stray placed nowhere", func() bool { return c.nodeStatus(t, "stray").GetGroupProblem() != "" })

	stdout, _, _ = ctl(t, c.addr, "nodes")
	rows := tableRows(stdout)
	if len(rows) != 5 {
		t.Errorf("nodes lists %d rows, want a header and 4 nodes:\n%s", len(rows), stdout)
	}
	want := map[string]string{"core-1": "default", "edge-1": "edge", "edge-b": "edge", "stray": "none (no group's selector matches its labels)"}
	for _, r := range rows[1:] {
		if len(r) < 3 || want[r[0]] != r[2] {
			t.Errorf("nodes row %q: want group %q", r, want[r[0]])
		}
	}
	stdout, stderr, code = ctl(t, c.addr, "nodes", "--group", "edge")
	var inEdge []string
	for _, r := range tableRows(stdout)[1:] {
		inEdge = append(inEdge, r[0])
	}
	if slices.Sort(inEdge); code != 0 || !slices.Equal(inEdge, []string{"edge-1", "edge-b"}) {
		t.Errorf("nodes --group edge: exit %d, nodes %v, stderr %q; want edge-1 and edge-b", code, inEdge, stderr)
	}
	stdout, _, _ = ctl(t, c.addr, "groups")
	compareRows(t, "groups", tableRows(stdout), [][]string{
		{"GROUP", "SELECTOR", "VERSION", "NODES", "APPLIED", "CLUSTERS", "LISTENERS"},
		{"default", "role=core", "2", "1", "1", "1", "1"},
		{"edge", "role=edge", "3", "2", "1", "1", "1"},
	})
	if coreNode.Node.Version() != "2" {
		t.Errorf("core-1 runs version %s after the edge changes; want 2", coreNode.Node.Version())
	}
}

// nodesRow is node id's ID, STATE, APPLIED, SENT and LAST-NACK as
// sluicectl nodes of the control plane at addr shows them (a lone control
// plane's table: ID LABELS GROUP STATE APPLIED SENT LAST-NACK), or nil and
// the command's output when it shows no such row.
func nodesRow(t *testing.T, addr, id string) (row []string, out string) {
	t.Helper()
	out, _, _ = ctl(t, addr, "nodes")
	for _, r := range tableRows(out) {
		if len(r) == 7 && r[0] == id {
			return []string{r[0], r[3], r[4], r[5], r[6]}, out
		}
	}
	return nil, out
}

// tableRows splits sluicectl's table output into cells (columns are two or
// more spaces apart).
func tableRows(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var cells []string
		for _, c := range strings.Split(line, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				cells = append(cells, c)
			}
		}
		rows = append(rows, cells)
	}
	return rows
}

// tableHas reports whether sluicectl's table out has a row whose first cell
// is key and whose cell in the column headed column is want.
func tableHas(out, key, column, want string) bool {
	rows := tableRows(out)
	if len(rows) == 0 {
		return false
	}
	col := slices.Index(rows[0], column)
	for _, r := range rows[1:] {
		if col >= 0 && len(r) == len(rows[0]) && r[0] == key {
			return r[col] == want
		}
	}
	return false
}

func compareRows(t *testing.T, what string, got, want [][]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d:\n%q", what, len(got), len(want), got)
	}
	for i := range want {
		if g, w := strings.Join(got[i], " | "), strings.Join(want[i], " | "); g != w {
			t.Errorf("%s row %d:\n got: %s\nwant: %s", what, i, g, w)
		}
	}
}

// TestNodeInNoGroupSaysWhy: a sluice-dp that no group's selector takes
// says so in its own log and on its status page, with the groups there
// are, and says when a group takes it; it then runs that group's snapshot.
func TestNodeInNoGroupSaysWhy(t *testing.T) {
	dir := t.TempDir()
	cpAddr, admin, lst := freeAddr(t), freeAddr(t), freeAddr(t)
	start(t, "sluice-cp", "--listen", cpAddr, "--http", "", "--data", filepath.Join(dir, "data"))
	waitFor(t, "sluice-cp", func() bool { _, _, code := ctl(t, cpAddr, "history"); return code == 0 })
	if _, stderr, code := ctl(t, cpAddr, "group", "set", "default", "--selector", "role=core"); code != 0 {
		t.Fatalf("group set default: exit %d, %s", code, stderr)
	}
	dp := start(t, "sluice-dp", "--cp", cpAddr, "--node-id", "lab-1", "--labels", "role=lab", "--admin", admin)
	const problem = "no group's selector matches its labels; the groups are default (role=core)"
	logged := `level=WARN msg="the control plane puts this node in no group, and sends it no snapshot until its labels or the groups change; the node serves the version it runs" node=lab-1 labels="role=lab" problem="` + problem + `" version=none`
	waitFor(t, "lab-1 to log that it is in no group", func() bool { return strings.Contains(dp.out.String(), logged) })
	var status struct {
		State        string `json:"state"`
		ControlPlane struct {
			Group    string `json:"group"`
			Unplaced string `json:"unplaced"`
		} `json:"control_plane"`
	}
	readStatus := func() {
		t.Helper()
		body, err := get(http.DefaultClient, "http://"+admin+"/status")
		if err != nil {
			t.Fatal(err)
		}
		status.State, status.ControlPlane.Group, status.ControlPlane.Unplaced = "", "", "" // left out when empty
		if err := json.Unmarshal([]byte(body), &status); err != nil {
			t.Fatalf("/status: %v\n%s", err, body)
		}
	}
	if readStatus(); status.State != "WAITING" || status.ControlPlane.Unplaced != problem || status.ControlPlane.Group != "" {
		t.Errorf("/status of lab-1 = %+v; want WAITING, in no group for %q", status, problem)
	}
	if page, err := get(http.DefaultClient, "http://"+admin+"/"); err != nil || !strings.Contains(page, "in no group: "+html.EscapeString(problem)) {
		t.Errorf("lab-1's status page does not say it is in no group (%v):\n%s", err, page)
	}

	b := startBackend(t, "lab-backend")
	stdout, stderr, code := ctl(t, cpAddr, "apply", "--group", "lab", "--selector", "role=lab", "--wait", "-f", writeFile(t, dir, "lab.yaml", fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, b.addr, lst)))
	if code != 0 || !strings.Contains(stdout, "1 node of group lab applied version 2") {
		t.Fatalf("apply to a new group lab: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if want := `level=INFO msg="the control plane puts this node in a group again" node=lab-1 group=lab was="` + problem + `"`; !strings.Contains(dp.out.String(), want) {
		t.Errorf("lab-1's log lacks %s:\n%s", want, dp.out.String())
	}
	if readStatus(); status.State != "READY" || status.ControlPlane.Group != "lab" || status.ControlPlane.Unplaced != "" {
		t.Errorf("/status of lab-1 = %+v; want READY in group lab", status)
	}
	if body, err := get(http.DefaultClient, "http://"+lst+"/"); err != nil || body != "lab-backend" {
		t.Errorf("GET via lab-1 = %q, %v; want lab-backend", body, err)
	}
}
