package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/controlplane"
)

// startRealCP runs a real control plane on a loopback port with its store
// in a temporary directory and returns its gRPC address.
func startRealCP(t *testing.T) string {
	t.Helper()
	cp, err := controlplane.New(controlplane.Options{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- cp.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-served })
	return cp.Addr().String()
}

// TestRollbackAndIfVersion drives rollback and --if-version as an operator
// and a CI job would, against a real control plane.
func TestRollbackAndIfVersion(t *testing.T) {
	addr := startRealCP(t)
	heavy := writeFile(t, "heavier.yaml", heavier)
	steps := []struct {
		args       []string
		code       int
		stdout     string // exact, when code is 0
		stderrHas  string // when code is not 0
		newVersion bool
	}{
		{args: []string{"apply", "-f", quickstart, "--if-version", "0"}, stdout: "applied version 1\n  + cluster web\n  + listener public\n  + listener db\n"},
		{args: []string{"apply", "-f", heavy, "--if-version", "1"},
			stdout: "applied version 2\n  ~ cluster web: endpoint web2 weight 1 -> 3; +endpoint web3\n"},
		// A CI job that reviewed version 1 must not overwrite version 2.
		{args: []string{"apply", "-f", quickstart, "--if-version", "1"}, code: 1,
			stderrHas: "the current version is 2, not 1"},
		{args: []string{"drain", "web/web1", "--if-version", "1"}, code: 1,
			stderrHas: "the current version is 2, not 1"},
		{args: []string{"rollback", "1", "--dry-run"},
			stdout: "dry run: would apply version 3\n  ~ cluster web: endpoint web2 weight 3 -> 1; -endpoint web3\n"},
		{args: []string{"rollback", "1", "--if-version", "2"},
			stdout: "applied version 3\n  ~ cluster web: endpoint web2 weight 3 -> 1; -endpoint web3\n"},
		{args: []string{"rollback", "1"}, stdout: "unchanged (version 3)\n"},
		{args: []string{"rollback", "9"}, code: 1, stderrHas: "version 9 is not stored; the kept versions are 1 to 3"},
		{args: []string{"rollback", "0"}, code: 2, stderrHas: `N must be a stored version number (1 or more), not "0"`},
		{args: []string{"rollback"}, code: 2, stderrHas: "N"},
		{args: []string{"apply", "-f", quickstart, "--if-version", "two"}, code: 2, stderrHas: `want a version number, not "two"`},
	}
	for _, s := range steps {
		code, stdout, stderr := sluicectl(t, addr, s.args...)
		if code != s.code {
			t.Fatalf("%v: status %d, want %d\nstdout: %s\nstderr: %s", s.args, code, s.code, stdout, stderr)
		}
		if code == 0 && stdout != s.stdout {
			t.Errorf("%v: stdout\n got: %q\nwant: %q", s.args, stdout, s.stdout)
		}
		if code != 0 && !strings.Contains(stderr, s.stderrHas) {
			t.Errorf("%v: stderr %q, want it to say %q", s.args, stderr, s.stderrHas)
		}
	}
	_, out, _ := sluicectl(t, addr, "history")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.Contains(lines[1], "rollback to version 1") {
		t.Errorf("history:\n%s\nwant a header and 3 versions, the newest commented \"rollback to version 1\"", out)
	}
}

// TestDiffJSON: scripts get each changed resource as an object.
func TestDiffJSON(t *testing.T) {
	addr := startRealCP(t)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: %s", stderr)
	}
	code, stdout, stderr := sluicectl(t, addr, "diff", "-f", writeFile(t, "heavier.yaml", heavier), "-o", "json")
	if code != 0 {
		t.Fatalf("diff -o json: exit %d: %s", code, stderr)
	}
	var got struct {
		Version         string `json:"version"`
		Changed         bool   `json:"changed"`
		ResourceChanges []struct {
			Op, Kind, Name string
			Fields         []string
		} `json:"resource_changes"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("diff -o json printed no JSON: %v\n%s", err, stdout)
	}
	if got.Version != "2" || !got.Changed || len(got.ResourceChanges) != 1 {
		t.Fatalf("diff -o json = %+v; want version 2, changed, one resource", got)
	}
	rc := got.ResourceChanges[0]
	if rc.Op != "changed" || rc.Kind != "cluster" || rc.Name != "web" ||
		!slices.Equal(rc.Fields, []string{"endpoint web2 weight 1 -> 3", "+endpoint web3"}) {
		t.Errorf("resource change = %+v; want cluster web changed: web2's weight and +endpoint web3", rc)
	}
	if code, _, stderr := sluicectl(t, addr, "diff", "-f", quickstart, "-o", "yaml"); code != 2 || !strings.Contains(stderr, `invalid value "yaml" for flag -o: must be text or json`) {
		t.Errorf("diff -o yaml: exit %d, %q; want a usage error", code, stderr)
	}
}

// TestBadGroupName: a group name that cannot be is refused with what a
// valid one is, wherever a command takes one, not with a regular
// expression, nor looked up and reported missing.
func TestBadGroupName(t *testing.T) {
	addr := startRealCP(t)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: %s", stderr)
	}
	const rule = `"Bad Name!" is not a valid group name: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters`
	for _, tc := range []struct {
		args  []string
		field string
	}{
		{[]string{"apply", "-f", quickstart, "--group", "Bad Name!"}, "group"},
		{[]string{"apply", "-f", quickstart, "--group", "Bad Name!", "--selector", "role=edge"}, "group"},
		{[]string{"diff", "-f", quickstart, "--group", "Bad Name!"}, "group"},
		{[]string{"get", "--group", "Bad Name!"}, "group"},
		{[]string{"history", "--group", "Bad Name!"}, "group"},
		{[]string{"set-weight", "web/web1", "3", "--group", "Bad Name!"}, "group"},
		{[]string{"rollback", "1", "--group", "Bad Name!"}, "group"},
		{[]string{"rollout", "status", "--group", "Bad Name!"}, "group"},
		{[]string{"group", "set", "Bad Name!", "--selector", "role=edge"}, "name"},
		{[]string{"group", "delete", "Bad Name!"}, "name"},
	} {
		cmd := tc.args[0]
		if cmd == "group" || cmd == "rollout" {
			cmd += " " + tc.args[1]
		}
		want := "sluicectl " + cmd + ": the control plane refused the request (1 fault):\n" + tc.field + ": " + rule + "\n"
		if code, stdout, stderr := sluicectl(t, addr, tc.args...); code != 1 || stdout != "" || stderr != want {
			t.Errorf("%q: status %d, stdout %q, stderr\n%s\nwant 1, nothing,\n%s", tc.args, code, stdout, stderr, want)
		}
	}
}

// TestDiffOfANewGroup: diff takes --selector as apply does, so a new
// group can be previewed; the group is not created.
func TestDiffOfANewGroup(t *testing.T) {
	addr := startRealCP(t)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: %s", stderr)
	}
	code, _, stderr := sluicectl(t, addr, "diff", "-f", quickstart, "--group", "edge")
	if code != 1 || !strings.Contains(stderr, `group "edge" does not exist`) || !strings.Contains(stderr, "give a selector to create it") {
		t.Fatalf("diff for a missing group: exit %d, %q", code, stderr)
	}
	code, stdout, stderr := sluicectl(t, addr, "diff", "-f", quickstart, "--group", "edge", "--selector", "role=edge")
	if code != 0 || !strings.Contains(stdout, `+ group edge: selector "role=edge"`) || !strings.Contains(stdout, "+ cluster web") {
		t.Fatalf("diff --selector: exit %d\nstdout %q\nstderr %q\nwant the group and its resources added", code, stdout, stderr)
	}
	if code, _, stderr := sluicectl(t, addr, "diff", "-f", quickstart, "--group", "edge"); code != 1 || !strings.Contains(stderr, `group "edge" does not exist`) {
		t.Errorf("after diff --selector the group exists: exit %d, %q", code, stderr)
	}
}

// TestReplicasAlone: a control plane without etcd lists itself alone,
// with its settings, and nothing to disagree with.
func TestReplicasAlone(t *testing.T) {
	addr := startRealCP(t)
	code, stdout, stderr := sluicectl(t, addr, "replicas")
	rows := tableRows(stdout)
	if code != 0 || stderr != "" || len(rows) != 2 {
		t.Fatalf("replicas: exit %d, stdout %q, stderr %q; want exit 0 and one replica", code, stdout, stderr)
	}
	want := []string{"REPLICA", "NODES", "TLS", "CLIENT-CA", "TOKEN-KEY", "RUNS"}
	if !slices.Equal(rows[0], want) {
		t.Errorf("header %q, want %q", rows[0], want)
	}
	if r := rows[1]; len(r) != 6 || r[0] != addr || r[1] != "0" || r[2] != "off" || r[3] != "off" || r[4] != "off" || !strings.HasPrefix(r[5], "listening on "+addr+", pid ") {
		t.Errorf("row %q; want %s with no node, TLS, client CA nor token key, listening on %s", r, addr, addr)
	}
	code, stdout, _ = sluicectl(t, addr, "replicas", "-o", "json")
	var resp struct {
		AnsweredBy string `json:"answered_by"`
		Replicated bool   `json:"replicated"`
		Replicas   []struct {
			Name string `json:"name"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal([]byte(stdout), &resp); code != 0 || err != nil || resp.AnsweredBy != addr || resp.Replicated || len(resp.Replicas) != 1 {
		t.Errorf("replicas -o json: exit %d, %v, %+v; want answered by %s, not replicated, one replica", code, err, resp, addr)
	}
}
