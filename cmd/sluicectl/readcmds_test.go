package main

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestGetUnknownVersion: get --version of a version that is not stored
// says which versions are, as rollback does, and exits 1.
func TestGetUnknownVersion(t *testing.T) {
	addr := startRealCP(t)
	code, _, stderr := sluicectl(t, addr, "get", "--version", "7")
	if code != 1 || !strings.Contains(stderr, "version 7 is not stored; no version is") {
		t.Errorf("get --version 7 before any apply: status %d, stderr %q; want 1 and %q", code, stderr, "version 7 is not stored; no version is")
	}
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: status %d: %s", code, stderr)
	}
	code, _, stderr = sluicectl(t, addr, "get", "--version", "9")
	want := "sluicectl get: version 9 is not stored; the kept versions are 1 to 1\n"
	if code != 1 || stderr != want {
		t.Errorf("get --version 9: status %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

// reportingCP is a control plane whose one node reports every second, as
// a real one does, with 10 more requests each time.
type reportingCP struct{ fakeCP }

func (r *reportingCP) GetStats(context.Context, *sluicev1.GetStatsRequest) (*sluicev1.GetStatsResponse, error) {
	at := time.Now().Truncate(time.Second)
	return &sluicev1.GetStatsResponse{Nodes: []*sluicev1.NodeStats{{
		NodeId: "n1", Connected: true, ReportedAt: timestamppb.New(at),
		Endpoints: []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "a", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP,
			Weight: 1, Requests: uint64(at.Unix()%100000) * 10}},
	}}}, nil
}

// TestTopOnceDoesNotWaitAnInterval: top --once prints its frame as soon
// as the node has reported twice (it reports every second), within the
// 12s its help promises, whatever --interval says.
func TestTopOnceDoesNotWaitAnInterval(t *testing.T) {
	addr := startCP(t, &reportingCP{})
	start := time.Now()
	code, stdout, stderr := sluicectl(t, addr, "top", "--once", "--interval", "30s")
	took := time.Since(start)
	if code != 0 || !strings.Contains(stdout, "10.0 req/s") {
		t.Fatalf("top --once --interval 30s: status %d after %v, want the frame with 10.0 req/s\nstdout: %s\nstderr: %s", code, took.Round(time.Millisecond), stdout, stderr)
	}
	// Well under the 30s --interval (past the 12s of onceWait, a frame
	// would not have come): a busy machine may take a few seconds.
	if took >= 15*time.Second {
		t.Errorf("top --once took %v; the node reports every second, and --interval is not its pace", took.Round(time.Millisecond))
	}
}

// TestTopRatesDoNotWaitAnInterval: the frames of top (here into a pipe)
// show rates as soon as the node has reported twice, not a whole
// --interval after the first frame, which has none yet.
func TestTopRatesDoNotWaitAnInterval(t *testing.T) {
	addr := startCP(t, &reportingCP{})
	// Long enough for two reports on a busy machine, far short of --interval.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--cp", addr, "top", "--interval", "30s"}, strings.NewReader(""), &stdout, &stderr)
	out := stdout.String()
	first, second, ok := strings.Cut(out, "sluicectl top ·")
	if ok {
		first, second, ok = strings.Cut(second, "sluicectl top ·")
	}
	if code != 0 || !ok || strings.Contains(first, "req/s") || !strings.Contains(second, "10.0 req/s") {
		t.Errorf("top --interval 30s for 6s: status %d, stderr %q; want a frame without rates, then one with 10.0 req/s:\n%s", code, stderr.String(), out)
	}
}

// groupedCP is a reportingCP with two nodes, n1 in group edge and n2 in
// default.
type groupedCP struct{ reportingCP }

func (g *groupedCP) GetStats(ctx context.Context, req *sluicev1.GetStatsRequest) (*sluicev1.GetStatsResponse, error) {
	resp, _ := g.reportingCP.GetStats(ctx, req)
	n2 := proto.Clone(resp.Nodes[0]).(*sluicev1.NodeStats)
	n2.NodeId, n2.Group = "n2", "default"
	resp.Nodes[0].Group = "edge"
	resp.Nodes = append(resp.Nodes, n2)
	return resp, nil
}

// TestTopGroup: top --group shows the nodes of that group only, and a
// group that does not exist is exit 1, as for stats.
func TestTopGroup(t *testing.T) {
	cp := &groupedCP{}
	cp.nodes = []*sluicev1.NodeStatus{{Id: "n1", Group: "edge"}, {Id: "n2", Group: "default"}}
	addr := startCP(t, cp)
	code, stdout, stderr := sluicectl(t, addr, "top", "--once", "--group", "edge")
	if code != 0 || !strings.Contains(stdout, "n1 ") || strings.Contains(stdout, "n2 ") {
		t.Errorf("top --once --group edge: status %d, stderr %q; want n1's frame without n2:\n%s", code, stderr, stdout)
	}
	code, _, stderr = sluicectl(t, addr, "top", "--once", "--group", "egde")
	if code != 1 || !strings.Contains(stderr, `sluicectl top: group "egde" does not exist, did you mean "edge"?`) {
		t.Errorf("top --group egde: status %d, stderr %q", code, stderr)
	}
}

// TestConnsLimitTooLarge: a --limit the API refuses is a usage error
// (status 2) naming the flag, not a failed call with the API's field path.
func TestConnsLimitTooLarge(t *testing.T) {
	addr := startRealCP(t)
	code, _, stderr := sluicectl(t, addr, "conns", "--limit", "200000")
	if code != 2 || !strings.Contains(stderr, "sluicectl conns: --limit must be at most 100000, not 200000") {
		t.Errorf("conns --limit 200000: status %d, stderr %q; want 2 and the flag's bound", code, stderr)
	}
	if code, _, stderr := sluicectl(t, addr, "conns", "--limit", "100000"); code != 0 {
		t.Errorf("conns --limit 100000: status %d: %s", code, stderr)
	}
}

// TestHistoryOfGroupMarksItsCurrentVersion: history --group speaks of one
// group (README), so the version marked current is the one that group's
// nodes run, not the newest version of another group.
func TestHistoryOfGroupMarksItsCurrentVersion(t *testing.T) {
	addr := startRealCP(t)
	for _, args := range [][]string{
		{"apply", "-f", quickstart, "--group", "edge", "--selector", "role=edge"},
		{"apply", "-f", quickstart},
	} {
		if code, _, stderr := sluicectl(t, addr, args...); code != 0 {
			t.Fatalf("%v: status %d: %s", args, code, stderr)
		}
	}
	for group, want := range map[string]string{"edge": "1*", "default": "2*"} {
		code, stdout, stderr := sluicectl(t, addr, "history", "--group", group)
		rows := tableRows(stdout)
		if code != 0 || len(rows) != 2 || rows[1][0] != want {
			t.Errorf("history --group %s: status %d, rows %q (stderr %q); want one version, %s", group, code, rows, stderr, want)
		}
	}
}

// TestUsageExitStatuses: the exit statuses the usage lists are all those
// sluicectl returns: with --wait, 2 also means a node refused the version
// and 3 that the wait timed out, which CI scripts gate on.
func TestUsageExitStatuses(t *testing.T) {
	code, stdout, _ := sluicectl(t, "", "--help")
	if code != 0 {
		t.Fatalf("--help: status %d", code)
	}
	for _, w := range []string{"2 usage error; with --wait, 2 a node refused the version", "3 --wait-timeout passed"} {
		if !strings.Contains(strings.Join(strings.Fields(stdout), " "), w) {
			t.Errorf("usage lacks %q:\n%s", w, stdout)
		}
	}
}

// TestHistoryNamesRefusingNodes: history's REFUSED-BY names the first three
// nodes that refused a version and counts the rest; -o json gives each
// listed node's reason and the count.
func TestHistoryNamesRefusingNodes(t *testing.T) {
	refusal := func(node string) *sluicev1.Refusal {
		return &sluicev1.Refusal{Node: node, Error: "listener public: bind: address already in use"}
	}
	f := &fakeCP{versions: []*sluicev1.GetResponse{
		{Info: &sluicev1.VersionInfo{Version: 1, Group: "default", Changes: []string{"+ cluster web"}}},
		{Info: &sluicev1.VersionInfo{Version: 2, Group: "default", Changes: []string{"~ listener public"}, RefusedBy: 5,
			Refusals: []*sluicev1.Refusal{refusal("edge-4"), refusal("edge-1"), refusal("edge-2"), refusal("edge-3"), refusal("edge-5")}}},
		{Info: &sluicev1.VersionInfo{Version: 3, Group: "default", Changes: []string{"~ listener public"}, RefusedBy: 1,
			Refusals: []*sluicev1.Refusal{refusal("edge-3")}}},
	}}
	addr := startCP(t, f)
	code, stdout, stderr := sluicectl(t, addr, "history")
	rows := tableRows(stdout)
	want := [][]string{
		{"VERSION", "CREATED", "AUTHOR", "GROUP", "REFUSED-BY", "CHANGES", "COMMENT"},
		{"3*", "-", "-", "default", "edge-3", "~ listener public", "-"},
		{"2", "-", "-", "default", "edge-4,edge-1,edge-2 +2", "~ listener public", "-"},
		{"1", "-", "-", "default", "-", "+ cluster web", "-"},
	}
	if code != 0 || !reflect.DeepEqual(rows, want) {
		t.Errorf("history: exit %d (stderr %q)\n got %q\nwant %q", code, stderr, rows, want)
	}
	code, stdout, _ = sluicectl(t, addr, "history", "-o", "json")
	for _, w := range []string{`"refused_by": 5`, `"node": "edge-5"`, `"error": "listener public: bind: address already in use"`} {
		if code != 0 || !strings.Contains(stdout, w) {
			t.Errorf("history -o json: exit %d, lacks %s:\n%s", code, w, stdout)
		}
	}
}

// TestHistoryShowsControlCharacters: a comment or an author with escape
// sequences cannot act on the terminal of whoever reads history or get;
// they show as \x1b and the like, each row on one line.
func TestHistoryShowsControlCharacters(t *testing.T) {
	f := &fakeCP{versions: []*sluicev1.GetResponse{
		{Info: &sluicev1.VersionInfo{Version: 1, Group: "default", Changes: []string{"+ cluster web"},
			Author: "mallory\x1b]0;pwned\x07", Comment: "line1\nline2\tred \x1b[31mRED\u009b2J"}},
	}}
	addr := startCP(t, f)
	code, stdout, stderr := sluicectl(t, addr, "history")
	rows := tableRows(stdout)
	want := [][]string{
		{"VERSION", "CREATED", "AUTHOR", "GROUP", "REFUSED-BY", "CHANGES", "COMMENT"},
		{"1*", "-", `mallory\x1b]0;pwned\x07`, "default", "-", "+ cluster web", `line1 line2 red \x1b[31mRED\x9b2J`},
	}
	if code != 0 || !reflect.DeepEqual(rows, want) {
		t.Errorf("history: exit %d (stderr %q)\n got %q\nwant %q", code, stderr, rows, want)
	}
	if strings.ContainsAny(stdout, "\x1b\x07\u009b") {
		t.Errorf("history wrote control characters: %q", stdout)
	}
}

// TestHistoryRowNamesTenChanges: a version of many changes (an apply of
// thousands of clusters) names its first ten in its row and counts the
// rest; -o json lists every one.
func TestHistoryRowNamesTenChanges(t *testing.T) {
	var changes []string
	for i := range 12 {
		changes = append(changes, fmt.Sprintf("+ cluster c%d", i))
	}
	f := &fakeCP{versions: []*sluicev1.GetResponse{{Info: &sluicev1.VersionInfo{Version: 1, Group: "default", Changes: changes}}}}
	addr := startCP(t, f)
	code, stdout, stderr := sluicectl(t, addr, "history")
	rows := tableRows(stdout)
	want := strings.Join(changes[:10], "; ") + "; +2 more (-o json lists them)"
	if code != 0 || len(rows) != 2 || rows[1][5] != want {
		t.Errorf("history: exit %d (stderr %q), rows %q; want CHANGES %q", code, stderr, rows, want)
	}
	code, stdout, _ = sluicectl(t, addr, "history", "-o", "json")
	if code != 0 || !strings.Contains(stdout, `"+ cluster c11"`) {
		t.Errorf("history -o json: exit %d, lacks the twelfth change:\n%s", code, stdout)
	}
}
