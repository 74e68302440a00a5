package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

const defaultTestTimeout = 10 * time.Second

// fakeCP is a ConfigService that keeps versions in memory, validates with
// the snapshot package like the real control plane, and records requests.
type fakeCP struct {
	sluicev1.UnimplementedConfigServiceServer

	mu       sync.Mutex
	versions []*sluicev1.GetResponse // index i holds version i+1
	applies  []*sluicev1.ApplyRequest
	updates  []*sluicev1.UpdateEndpointRequest
	conns    []*sluicev1.ListConnsRequest
	nodes    []*sluicev1.NodeStatus
	records  []*sluicev1.ConnRecord
	stats    []*sluicev1.GetStatsRequest
	statsOut *sluicev1.GetStatsResponse
	shutdown []*sluicev1.ShutdownSessionsRequest
	results  []*sluicev1.CommandResult
	shutErr  error // ShutdownSessions fails with it, when set
	// partial is the Incomplete of ListNodes, ListConns and GetStats;
	// elsewhere the ReportedElsewhere of ListConns.
	partial   string
	elsewhere []string
}

func (f *fakeCP) current() *sluicev1.Snapshot {
	if len(f.versions) == 0 {
		return nil
	}
	return f.versions[len(f.versions)-1].GetSnapshot()
}

func (f *fakeCP) Apply(_ context.Context, req *sluicev1.ApplyRequest) (*sluicev1.ApplyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies = append(f.applies, req)
	return f.apply(req)
}

// UpdateEndpoint edits the current snapshot and applies it; an unknown
// cluster or endpoint is NOT_FOUND, as from the real control plane.
func (f *fakeCP) UpdateEndpoint(_ context.Context, req *sluicev1.UpdateEndpointRequest) (*sluicev1.ApplyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, req)
	if f.current() == nil {
		return nil, status.Error(codes.FailedPrecondition, "no snapshot has been applied yet")
	}
	next := proto.Clone(f.current()).(*sluicev1.Snapshot)
	for _, c := range next.GetClusters() {
		if c.GetName() != req.GetCluster() {
			continue
		}
		for _, ep := range c.GetEndpoints() {
			if ep.GetName() != req.GetEndpoint() {
				continue
			}
			if req.Weight != nil {
				ep.Weight = proto.Uint32(req.GetWeight())
			}
			switch req.GetState() {
			case sluicev1.AdminState_ADMIN_STATE_UNSPECIFIED:
			case sluicev1.AdminState_ADMIN_STATE_ACTIVE:
				ep.State = sluicev1.AdminState_ADMIN_STATE_UNSPECIFIED
			default:
				ep.State = req.GetState()
			}
			return f.apply(&sluicev1.ApplyRequest{Snapshot: next, DryRun: req.GetDryRun(), Author: req.GetAuthor(), Comment: req.GetComment()})
		}
		return nil, status.Errorf(codes.NotFound, "cluster %q has no endpoint %q (it has: web1, web2, sorry)", req.GetCluster(), req.GetEndpoint())
	}
	return nil, status.Errorf(codes.NotFound, "cluster %q not found", req.GetCluster())
}

// apply is Apply with f.mu held.
func (f *fakeCP) apply(req *sluicev1.ApplyRequest) (*sluicev1.ApplyResponse, error) {
	if err := snapshot.Validate(req.GetSnapshot()); err != nil {
		return nil, snapshot.ToStatus(err)
	}
	var changes []string
	for _, c := range snapshot.Diff(f.current(), req.GetSnapshot()) {
		changes = append(changes, c.String())
	}
	cur := uint64(len(f.versions))
	if len(changes) == 0 {
		return &sluicev1.ApplyResponse{Version: cur}, nil
	}
	if req.GetDryRun() {
		return &sluicev1.ApplyResponse{Version: cur + 1, Changed: true, Changes: changes}, nil
	}
	f.versions = append(f.versions, &sluicev1.GetResponse{
		Info: &sluicev1.VersionInfo{Version: cur + 1, Created: timestamppb.Now(), Author: req.GetAuthor(),
			Comment: req.GetComment(), Changes: changes},
		Snapshot: req.GetSnapshot(),
	})
	return &sluicev1.ApplyResponse{Version: cur + 1, Changed: true, Changes: changes}, nil
}

func (f *fakeCP) Get(_ context.Context, req *sluicev1.GetRequest) (*sluicev1.GetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := req.GetVersion()
	if v == 0 {
		v = uint64(len(f.versions))
	}
	if v == 0 || v > uint64(len(f.versions)) {
		return nil, status.Errorf(codes.NotFound, "version %d not found", req.GetVersion())
	}
	return f.versions[v-1], nil
}

func (f *fakeCP) History(context.Context, *sluicev1.HistoryRequest) (*sluicev1.HistoryResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &sluicev1.HistoryResponse{Current: uint64(len(f.versions))}
	for i := len(f.versions) - 1; i >= 0; i-- {
		resp.Versions = append(resp.Versions, f.versions[i].GetInfo())
	}
	return resp, nil
}

func (f *fakeCP) ListNodes(context.Context, *sluicev1.ListNodesRequest) (*sluicev1.ListNodesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &sluicev1.ListNodesResponse{Nodes: f.nodes, Incomplete: f.partial}, nil
}

// ListGroups lists default and the groups of the nodes and of the stats.
func (f *fakeCP) ListGroups(context.Context, *sluicev1.ListGroupsRequest) (*sluicev1.ListGroupsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := []string{"default"}
	for _, n := range f.nodes {
		names = append(names, n.GetGroup())
	}
	for _, n := range f.statsOut.GetNodes() {
		names = append(names, n.GetGroup())
	}
	slices.Sort(names)
	resp := &sluicev1.ListGroupsResponse{}
	for _, name := range slices.Compact(names) {
		if name != "" {
			resp.Groups = append(resp.Groups, &sluicev1.GroupStatus{Name: name})
		}
	}
	return resp, nil
}

func (f *fakeCP) ListConns(_ context.Context, req *sluicev1.ListConnsRequest) (*sluicev1.ListConnsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns = append(f.conns, req)
	return &sluicev1.ListConnsResponse{Records: f.records, ReportedElsewhere: f.elsewhere, Incomplete: f.partial}, nil
}

func (f *fakeCP) GetStats(_ context.Context, req *sluicev1.GetStatsRequest) (*sluicev1.GetStatsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats = append(f.stats, req)
	if f.statsOut == nil {
		return &sluicev1.GetStatsResponse{Incomplete: f.partial}, nil
	}
	return f.statsOut, nil
}

// ShutdownSessions answers with f.results for web/web1 only, NOT_FOUND
// otherwise, as the real control plane words it.
func (f *fakeCP) ShutdownSessions(_ context.Context, req *sluicev1.ShutdownSessionsRequest) (*sluicev1.ShutdownSessionsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutdown = append(f.shutdown, req)
	if f.shutErr != nil {
		return nil, f.shutErr
	}
	if req.GetCluster() != "web" || req.GetEndpoint() != "web1" {
		return nil, status.Errorf(codes.NotFound, "cluster %q has no endpoint %q (it has: web1, web2, sorry)", req.GetCluster(), req.GetEndpoint())
	}
	return &sluicev1.ShutdownSessionsResponse{Results: f.results}, nil
}

// startCP serves f on a loopback port and returns its address.
func startCP(t *testing.T, f sluicev1.ConfigServiceServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sluicev1.RegisterConfigServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// sluicectl runs the command line against addr and returns its status and
// output.
func sluicectl(t *testing.T, addr string, args ...string) (int, string, string) {
	t.Helper()
	return sluicectlStdin(t, addr, "", args...)
}

// sluicectlStdin is sluicectl with stdin on its standard input.
func sluicectlStdin(t *testing.T, addr, stdin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if addr != "" {
		args = append([]string{"--cp", addr}, args...)
	}
	code := run(ctx, args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const quickstart = "../../examples/quickstart.yaml"

// heavier is quickstart with web2's weight raised and an endpoint added.
const heavier = `clusters:
  - name: web
    lb_policy: ROUND_ROBIN
    health_check: { interval: 2s, fall: 3, rise: 2 }
    endpoints:
      - { name: web1, address: 127.0.0.1:9001, weight: 2 }
      - { name: web2, address: 127.0.0.1:9002, weight: 3 }
      - { name: web3, address: 127.0.0.1:9003 }
      - { name: sorry, address: 127.0.0.1:9009, backup: true }
listeners:
  - { name: public, address: 127.0.0.1:8080, protocol: HTTP, default_cluster: web }
  - { name: db, address: 127.0.0.1:6663, protocol: TCP, default_cluster: web }
`

func TestValidateCommand(t *testing.T) {
	nope := filepath.Join(t.TempDir(), "nope.yaml")
	bad := writeFile(t, "bad.yaml", `clusters:
  - name: web
    lb_polcy: ROUND_ROBIN
    endpoints:
      - { name: a, address: 10.0.0.1:80, weight: "2" }
`)
	warned := writeFile(t, "warned.yaml", `clusters:
  - { name: db, lb_policy: HASH, hash: { key: URI }, endpoints: [{ name: a, address: 10.0.0.1:5432 }] }
listeners:
  - { name: pg, address: ":5432", protocol: TCP, default_cluster: db }
`)
	invalid := writeFile(t, "invalid.yaml", `clusters:
  - name: web
    endpoints:
      - { name: a, address: 10.0.0.1:80 }
      - { name: b, address: 10.0.0.2:80, weight: 300 }
listeners:
  - { name: l, address: ":80", protocol: HTTP, default_cluster: wbe }
`)
	missing := writeFile(t, "missing.yaml", `clusters:
  - name: web
    endpoints:
      - { name: a, address: 10.0.0.1:80 }
      - { weight: 1 }
  - { name: db, lb_policy: HASH, endpoints: [{ name: d, address: 10.0.0.3:5432 }] }
listeners:
  - { name: l, address: ":80", protocol: HTTP }
  - { name: t, address: ":81", default_cluster: web }
`)
	// A directory: faults name the file and line that hold them, and the
	// path as that file writes it.
	dir := filepath.Dir(writeFile(t, "a.yaml", "clusters: [{ name: api, endpoints: [{ name: a, address: 10.0.0.1:80 }] }]\n"))
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(`clusters:
  - name: web
    endpoints:
      - name: w1
        address: 10.0.0.2:80
        weight: 300
listeners:
  - { name: l, address: ":80", protocol: HTTP, default_cluster: wbe }
`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr []string
	}{
		{
			name:       "quickstart",
			args:       []string{"validate", "-f", quickstart},
			wantStdout: "ok: 1 cluster, 2 listeners\n",
		},
		{
			name:     "parse faults with paths and lines",
			args:     []string{"validate", "-f", bad},
			wantCode: 1,
			wantStderr: []string{
				`clusters[0].lb_polcy: unknown field, did you mean "lb_policy"? (` + bad + ":3)",
				`clusters[0].endpoints[0].weight: expected an integer, got the string "2" (` + bad + ":5)",
			},
		},
		{
			name:     "validation faults with paths",
			args:     []string{"validate", "-f", invalid},
			wantCode: 1,
			wantStderr: []string{
				"clusters[0].endpoints[1].weight: must be <= 256 (" + invalid + ":5)\n",
				`listeners[0].default_cluster: unknown cluster "wbe", did you mean "web"? (` + invalid + ":7)\n",
			},
		},
		{
			// The control plane sees a left-out field's default: the fault
			// says the field is missing, not that "" is too short.
			name:     "faults on fields left out",
			args:     []string{"validate", "-f", missing},
			wantCode: 1,
			wantStderr: []string{
				"\nclusters[0].endpoints[1].name: is missing; it must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit (" + missing + ":5)\n",
				"\nclusters[0].endpoints[1].address: is missing; it must be 3 to 261 characters long (" + missing + ":5)\n",
				"\nlisteners[0].default_cluster: is missing (" + missing + ":8)\n",
				"\nlisteners[1].protocol: is required; one of TCP, HTTP (" + missing + ":9)\n",
				// A fault that says the field is required keeps its words.
				"\nclusters[1].hash: required when lb_policy is HASH: say which key to hash, e.g. hash: { key: SOURCE_IP } (" + missing + ":6)\n",
			},
		},
		{
			name:     "validation faults of a directory placed in their files",
			args:     []string{"validate", "-f", dir},
			wantCode: 1,
			wantStderr: []string{
				"sluicectl validate: " + dir + ": 2 faults:\n",
				"\nclusters[0].endpoints[0].weight: must be <= 256 (" + filepath.Join(dir, "b.yaml") + ":6)\n",
				`listeners[0].default_cluster: unknown cluster "wbe", did you mean "web"? (` + filepath.Join(dir, "b.yaml") + ":8)\n",
			},
		},
		{
			name:       "warnings refuse nothing",
			args:       []string{"validate", "-f", warned},
			wantStdout: "ok: 1 cluster, 1 listener\n",
			wantStderr: []string{
				"sluicectl validate: " + warned + ": 1 warning:\n" +
					`clusters[0].hash.key: URI hashes HTTP requests, and only TCP listeners route to cluster "db" (pg): their sessions are balanced round robin (SOURCE_IP hashes TCP sessions) (` + warned + ":2)\n",
			},
		},
		{
			name:       "missing -f",
			args:       []string{"validate"},
			wantCode:   2,
			wantStderr: []string{"-f is required", "Usage: sluicectl validate -f FILE|DIR"},
		},
		{
			name:       "missing file",
			args:       []string{"validate", "-f", nope},
			wantCode:   1,
			wantStderr: []string{"sluicectl validate: " + nope + ": no such file or directory\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No control plane: validate must work offline.
			code, stdout, stderr := sluicectl(t, "127.0.0.1:1", tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit status = %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if stdout != tt.wantStdout {
				t.Errorf("stdout = %q, want %q", stdout, tt.wantStdout)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestApply(t *testing.T) {
	cp := &fakeCP{}
	addr := startCP(t, cp)

	code, stdout, stderr := sluicectl(t, addr, "apply", "-f", quickstart, "--comment", "first")
	if code != 0 {
		t.Fatalf("apply: status %d, stderr:\n%s", code, stderr)
	}
	want := "applied version 1\n  + cluster web\n  + listener public\n  + listener db\n"
	if stdout != want {
		t.Errorf("apply stdout:\n got: %q\nwant: %q", stdout, want)
	}
	req := cp.applies[0]
	if req.GetDryRun() || req.GetComment() != "first" || !strings.Contains(req.GetAuthor(), "@") {
		t.Errorf("apply request: dry_run=%v comment=%q author=%q; want false, first, user@host", req.GetDryRun(), req.GetComment(), req.GetAuthor())
	}
	if want, _ := snapshot.Load(quickstart); !proto.Equal(req.GetSnapshot(), want) {
		t.Errorf("apply sent a different snapshot than the file holds")
	}

	code, stdout, _ = sluicectl(t, addr, "apply", "-f", quickstart)
	if code != 0 || stdout != "unchanged (version 1)\n" {
		t.Errorf("re-apply: status %d, stdout %q; want 0, %q", code, stdout, "unchanged (version 1)\n")
	}

	file := writeFile(t, "heavier.yaml", heavier)
	code, stdout, _ = sluicectl(t, addr, "apply", "--dry-run", "-f", file)
	want = "dry run: would apply version 2\n  ~ cluster web: endpoint web2 weight 1 -> 3; +endpoint web3\n"
	if code != 0 || stdout != want {
		t.Errorf("dry run: status %d\n got: %q\nwant: %q", code, stdout, want)
	}
	if n := len(cp.versions); n != 1 {
		t.Errorf("after dry run the control plane holds %d versions, want 1", n)
	}

	code, stdout, _ = sluicectl(t, addr, "diff", "-f", file)
	want = "~ cluster web: endpoint web2 weight 1 -> 3; +endpoint web3\n"
	if code != 0 || stdout != want {
		t.Errorf("diff: status %d\n got: %q\nwant: %q", code, stdout, want)
	}
	if last := cp.applies[len(cp.applies)-1]; !last.GetDryRun() {
		t.Errorf("diff sent dry_run=false")
	}
	code, stdout, _ = sluicectl(t, addr, "diff", "-f", quickstart)
	if code != 0 || stdout != "no changes\n" {
		t.Errorf("diff unchanged: status %d, stdout %q; want 0, %q", code, stdout, "no changes\n")
	}

	// A setting that can have no effect is applied, with a warning.
	warned := writeFile(t, "warned.yaml", `clusters:
  - { name: db, endpoints: [{ name: a, address: 10.0.0.1:5432 }] }
listeners:
  - { name: pg, address: ":5432", protocol: TCP, default_cluster: db, tcp: { inspect_timeout: 1s } }
`)
	for _, cmd := range []string{"diff", "apply"} {
		code, stdout, stderr := sluicectl(t, addr, cmd, "-f", warned)
		wantErr := "sluicectl " + cmd + ": " + warned + ": 1 warning:\n" +
			"listeners[0].tcp.inspect_timeout: has no effect: no rule of the listener matches on sni or tls, so it reads nothing before it picks a cluster (" + warned + ":4)\n"
		if code != 0 || !strings.Contains(stdout, "- cluster web") || stderr != wantErr {
			t.Errorf("%s of a snapshot with a warning: status %d\nstdout %q\nstderr %q\nwant 0, the changes, and stderr %q", cmd, code, stdout, stderr, wantErr)
		}
	}
	// diff -o json, which CI reads, has the warning in its JSON alone.
	code, stdout, stderr = sluicectl(t, addr, "diff", "-f", warned, "-o", "json")
	var got struct{ Warnings []string }
	if err := json.Unmarshal([]byte(stdout), &got); code != 0 || err != nil || stderr != "" ||
		!slices.Equal(got.Warnings, []string{"listeners[0].tcp.inspect_timeout: has no effect: no rule of the listener matches on sni or tls, so it reads nothing before it picks a cluster (" + warned + ":4)"}) {
		t.Errorf("diff -o json of a snapshot with a warning: status %d, warnings %q (%v), stderr %q; want 0, the warning in the JSON and no stderr", code, got.Warnings, err, stderr)
	}
}

// TestSeveralFiles: -f given several times, as kubectl apply takes it,
// sends the files merged in the order given; what cannot be merged, and a
// set of files that lists nothing, is refused before anything is sent.
func TestSeveralFiles(t *testing.T) {
	cp := &fakeCP{}
	addr := startCP(t, cp)
	clusters := writeFile(t, "clusters.yaml", "clusters:\n  - { name: web, endpoints: [{ name: web1, address: 127.0.0.1:9001 }] }\n")
	listeners := writeFile(t, "listeners.yaml", "listeners:\n  - { name: public, address: 127.0.0.1:8080, protocol: HTTP, default_cluster: web }\n")
	if code, stdout, stderr := sluicectl(t, addr, "apply", "-f", clusters, "-f", listeners); code != 0 || stdout != "applied version 1\n  + cluster web\n  + listener public\n" {
		t.Fatalf("apply -f clusters.yaml -f listeners.yaml: status %d, stdout %q, stderr %q; want both files applied", code, stdout, stderr)
	}
	if want, _ := snapshot.Load(clusters, listeners); len(cp.applies) != 1 || !proto.Equal(cp.applies[0].GetSnapshot(), want) {
		t.Errorf("apply sent %v; want the two files merged", cp.applies)
	}
	cut := writeFile(t, "cut.yaml", "clusters:\n")
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		// Listeners alone would refer to no cluster; the set is checked whole.
		{[]string{"validate", "-f", listeners}, 1, `listeners[0].default_cluster: unknown cluster "web"`},
		{[]string{"validate", "-f", clusters, "-f", clusters}, 1, "sluicectl validate: " + clusters + " is given twice\n"},
		{[]string{"apply", "-f", "-", "-f", clusters}, 2, "sluicectl apply: -f - (standard input) cannot be merged with other files: give it alone\n"},
		{[]string{"apply", "-f", cut}, 1, "sluicectl apply: " + cut + ": 1 fault:\nthe file lists no clusters and no listeners: applied, it would remove every cluster and listener. To remove them all on purpose, give it `clusters: []`\n"},
		{[]string{"diff", "-f", cut, "-f", writeFile(t, "empty.yaml", "")}, 1, "lists clusters or listeners"},
	} {
		code, stdout, stderr := sluicectl(t, addr, tt.args...)
		if code != tt.code || stdout != "" || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want %d and %q", tt.args, code, stdout, stderr, tt.code, tt.stderr)
		}
	}
	if len(cp.applies) != 1 {
		t.Errorf("the control plane got %d applies; want the first alone", len(cp.applies))
	}
}

// TestSnapshotFromStdin: -f - reads the snapshot from standard input, as
// a pipe makes it; faults name it stdin.
func TestSnapshotFromStdin(t *testing.T) {
	cp := &fakeCP{}
	addr := startCP(t, cp)
	body, err := os.ReadFile(quickstart)
	if err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := sluicectlStdin(t, addr, string(body), "apply", "-f", "-"); code != 0 || !strings.HasPrefix(stdout, "applied version 1\n") {
		t.Fatalf("apply -f -: status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if want, _ := snapshot.Load(quickstart); !proto.Equal(cp.applies[0].GetSnapshot(), want) {
		t.Errorf("apply -f - sent a different snapshot than its input")
	}
	bad := strings.Replace(string(body), "weight: 1 }", "weight: 300 }", 1)
	code, stdout, stderr := sluicectlStdin(t, "", bad, "validate", "-f", "-")
	if want := "sluicectl validate: stdin: 1 fault:\nclusters[0].endpoints[1].weight: must be <= 256 (stdin:16)\n"; code != 1 || stdout != "" || stderr != want {
		t.Errorf("validate -f - of a bad snapshot: status %d, stdout %q, stderr %q; want 1 and %q", code, stdout, stderr, want)
	}
}

func TestApplyRefused(t *testing.T) {
	cp := &fakeCP{}
	addr := startCP(t, cp)
	// Parses, but the control plane refuses it.
	file := writeFile(t, "bad.yaml", `clusters:
  - name: web
    endpoints:
      - { name: a, address: 10.0.0.1:80 }
      - { name: b, address: 10.0.0.2:80, weight: 257 }
listeners:
  - { name: l, address: ":80", protocol: HTTP, default_cluster: api }
`)
	for _, cmd := range []string{"apply", "diff"} {
		code, stdout, stderr := sluicectl(t, addr, cmd, "-f", file)
		if code != 1 {
			t.Errorf("%s: status %d, want 1", cmd, code)
		}
		if stdout != "" {
			t.Errorf("%s: stdout %q, want nothing", cmd, stdout)
		}
		for _, w := range []string{
			"refused the snapshot (2 faults)",
			"\nclusters[0].endpoints[1].weight: must be <= 256 (" + file + ":5)\n",
			"\nlisteners[0].default_cluster: unknown cluster \"api\" (" + file + ":7)\n",
		} {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", cmd, w, stderr)
			}
		}
	}
	if len(cp.versions) != 0 {
		t.Errorf("a refused snapshot was stored")
	}

	// Does not parse: nothing is sent.
	sent := len(cp.applies)
	bad := writeFile(t, "typo.yaml", "clusters:\n  - name: web\n    lb_polcy: ROUND_ROBIN\n")
	code, _, stderr := sluicectl(t, addr, "apply", "-f", bad)
	if code != 1 || !strings.Contains(stderr, "clusters[0].lb_polcy: unknown field") {
		t.Errorf("apply of an unparsable file: status %d, stderr:\n%s", code, stderr)
	}
	if len(cp.applies) != sent {
		t.Errorf("an unparsable snapshot was sent to the control plane")
	}
}

func TestEndpointCommands(t *testing.T) {
	cp := &fakeCP{}
	addr := startCP(t, cp)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: %s", stderr)
	}
	tests := []struct {
		args  []string
		want  string // stdout
		req   *sluicev1.UpdateEndpointRequest
		saved int // versions the control plane holds after
	}{
		{
			args:  []string{"set-weight", "web/web1", "5"},
			want:  "applied version 2\n  ~ cluster web: endpoint web1 weight 2 -> 5\n",
			req:   &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web1", Weight: proto.Uint32(5)},
			saved: 2,
		},
		{
			args:  []string{"drain", "web/web2", "--comment", "kernel upgrade"},
			want:  "applied version 3\n  ~ cluster web: endpoint web2 state ACTIVE -> DRAINING\n",
			req:   &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", State: sluicev1.AdminState_ADMIN_STATE_DRAINING, Comment: "kernel upgrade"},
			saved: 3,
		},
		{
			args:  []string{"disable", "--dry-run", "web/sorry"},
			want:  "dry run: would apply version 4\n  ~ cluster web: endpoint sorry state ACTIVE -> DISABLED\n",
			req:   &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "sorry", State: sluicev1.AdminState_ADMIN_STATE_DISABLED, DryRun: true},
			saved: 3,
		},
		{
			args:  []string{"enable", "web/web2"},
			want:  "applied version 4\n  ~ cluster web: endpoint web2 state DRAINING -> ACTIVE\n",
			req:   &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", State: sluicev1.AdminState_ADMIN_STATE_ACTIVE},
			saved: 4,
		},
		{
			args:  []string{"set-weight", "web/web1", "5", "--dry-run"},
			want:  "dry run: unchanged (version 4)\n",
			req:   &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web1", Weight: proto.Uint32(5), DryRun: true},
			saved: 4,
		},
		{
			args:  []string{"set-weight", "web/web1", "5"},
			want:  "unchanged (version 4)\n",
			req:   &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web1", Weight: proto.Uint32(5)},
			saved: 4,
		},
	}
	for _, tt := range tests {
		code, stdout, stderr := sluicectl(t, addr, tt.args...)
		if code != 0 {
			t.Fatalf("%v: status %d, stderr:\n%s", tt.args, code, stderr)
		}
		if stdout != tt.want {
			t.Errorf("%v: stdout\n got: %q\nwant: %q", tt.args, stdout, tt.want)
		}
		got := proto.Clone(cp.updates[len(cp.updates)-1]).(*sluicev1.UpdateEndpointRequest)
		if !strings.Contains(got.GetAuthor(), "@") {
			t.Errorf("%v: author %q, want user@host", tt.args, got.GetAuthor())
		}
		got.Author = ""
		if !proto.Equal(got, tt.req) {
			t.Errorf("%v: request\n got: %v\nwant: %v", tt.args, got, tt.req)
		}
		if len(cp.versions) != tt.saved {
			t.Errorf("%v: the control plane holds %d versions, want %d", tt.args, len(cp.versions), tt.saved)
		}
	}
}

func TestEndpointCommandsNotFound(t *testing.T) {
	cp := &fakeCP{}
	addr := startCP(t, cp)
	code, stdout, stderr := sluicectl(t, addr, "drain", "web/web1")
	if want := "sluicectl drain: no snapshot has been applied yet\n"; code != 1 || stdout != "" || stderr != want {
		t.Errorf("drain before any apply: status %d, stdout %q, stderr %q; want 1, nothing, %q", code, stdout, stderr, want)
	}
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: %s", stderr)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"drain", "web/web3"}, `sluicectl drain: cluster "web" has no endpoint "web3" (it has: web1, web2, sorry)` + "\n"},
		{[]string{"set-weight", "api/a", "3"}, `sluicectl set-weight: cluster "api" not found` + "\n"},
	} {
		code, stdout, stderr := sluicectl(t, addr, tt.args...)
		if code != 1 || stdout != "" || stderr != tt.want {
			t.Errorf("%v: status %d, stdout %q, stderr %q; want 1, nothing, %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
	if len(cp.versions) != 1 {
		t.Errorf("the control plane holds %d versions, want 1", len(cp.versions))
	}
}

// Bad arguments are usage errors (status 2) and nothing is sent.
// An endpoint named without its cluster is refused with the
// CLUSTER/ENDPOINT the current snapshot has for it.
func TestEndpointWithoutItsCluster(t *testing.T) {
	cp := &fakeCP{}
	addr := startCP(t, cp)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"drain", "web1"}, `want CLUSTER/ENDPOINT, not "web1", did you mean "web/web1"?` + "\n"},
		{[]string{"set-weight", "sorry", "2"}, `want CLUSTER/ENDPOINT, not "sorry", did you mean "web/sorry"?` + "\n"},
		{[]string{"shutdown-sessions", "web2"}, `want CLUSTER/ENDPOINT, not "web2", did you mean "web/web2"?` + "\n"},
		{[]string{"enable", "web"}, `want CLUSTER/ENDPOINT, not "web"` + "\n"}, // a cluster: no endpoint of that name
		{[]string{"disable", "web1/"}, `want CLUSTER/ENDPOINT, not "web1/"` + "\n"},
	} {
		code, stdout, stderr := sluicectl(t, addr, tt.args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: status %d, stdout %q, stderr %q; want 2, nothing, %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
	two := `
clusters:
  - { name: web, endpoints: [{ name: a, address: "127.0.0.1:9001" }] }
  - { name: api, endpoints: [{ name: a, address: "127.0.0.1:9002" }] }
listeners:
  - { name: public, address: "127.0.0.1:8080", protocol: HTTP, default_cluster: web }
`
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", writeFile(t, "two.yaml", two)); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	want := `want CLUSTER/ENDPOINT, not "a", did you mean "web/a" or "api/a"?` + "\n"
	if code, _, stderr := sluicectl(t, addr, "drain", "a"); code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("drain a, in two clusters: status %d, stderr %q; want 2 and %q", code, stderr, want)
	}
	if len(cp.updates) != 0 {
		t.Errorf("bad arguments sent %d requests", len(cp.updates))
	}
}

func TestEndpointCommandsBadArguments(t *testing.T) {
	cp := &fakeCP{}
	addr := startCP(t, cp)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"set-weight"}, "missing CLUSTER/ENDPOINT WEIGHT"},
		{[]string{"set-weight", "web/web1"}, "missing WEIGHT"},
		{[]string{"set-weight", "web", "3"}, `want CLUSTER/ENDPOINT, not "web"`},
		{[]string{"set-weight", "web/web1", "x"}, `WEIGHT must be an integer from 0 to 256, not "x"`},
		{[]string{"set-weight", "web/web1", "257"}, `WEIGHT must be an integer from 0 to 256, not "257"`},
		{[]string{"set-weight", "web/web1", "1.5"}, `WEIGHT must be an integer from 0 to 256, not "1.5"`},
		{[]string{"set-weight", "web/web1", "99999999999"}, `WEIGHT must be an integer from 0 to 256, not "99999999999"`},
		{[]string{"set-weight", "web/web1", "-1"}, "flag provided but not defined: -1"},
		{[]string{"set-weight", "web/web1", "3", "4"}, `unexpected argument "4"`},
		{[]string{"drain"}, "missing CLUSTER/ENDPOINT"},
		{[]string{"drain", "web/web1", "web/web2"}, `unexpected argument "web/web2"`},
		{[]string{"drain", "web", "web1"}, `"web" "web1": CLUSTER/ENDPOINT is one argument, "web/web1"`},
		{[]string{"set-weight", "web", "web1", "2"}, `"web" "web1": CLUSTER/ENDPOINT is one argument, "web/web1"`},
		{[]string{"drain", "/web1"}, `want CLUSTER/ENDPOINT, not "/web1"`},
		{[]string{"disable", "web/"}, `want CLUSTER/ENDPOINT, not "web/"`},
		{[]string{"enable", "web/web1/x"}, `want CLUSTER/ENDPOINT, not "web/web1/x"`},
		{[]string{"enable", "web/web1", "--bogus"}, "flag provided but not defined: -bogus"},
	} {
		code, stdout, stderr := sluicectl(t, addr, tt.args...)
		if code != 2 || stdout != "" {
			t.Errorf("%v: status %d, stdout %q; want 2, nothing", tt.args, code, stdout)
		}
		if !strings.Contains(stderr, tt.want) || !strings.Contains(stderr, "Usage: sluicectl "+tt.args[0]+" CLUSTER/ENDPOINT") {
			t.Errorf("%v: stderr lacks %q and the usage:\n%s", tt.args, tt.want, stderr)
		}
	}
	if len(cp.updates) != 0 {
		t.Errorf("bad arguments sent %d requests", len(cp.updates))
	}
}

func TestGet(t *testing.T) {
	cp := &fakeCP{}
	addr := startCP(t, cp)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: %s", stderr)
	}
	file := writeFile(t, "heavier.yaml", heavier)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", file); code != 0 {
		t.Fatalf("apply: %s", stderr)
	}
	want1, _ := snapshot.Load(quickstart)
	want2, _ := snapshot.Load(file)

	for _, tt := range []struct {
		args   []string
		want   *sluicev1.Snapshot
		header string
	}{
		{[]string{"get"}, want2, "# version 2"},
		{[]string{"get", "--version", "1"}, want1, "# version 1"},
		{[]string{"get", "-o", "json"}, want2, "{"},
		{[]string{"get", "--version", "1", "-o", "json"}, want1, "{"},
	} {
		code, stdout, stderr := sluicectl(t, addr, tt.args...)
		if code != 0 {
			t.Fatalf("%v: status %d: %s", tt.args, code, stderr)
		}
		if !strings.HasPrefix(stdout, tt.header) {
			t.Errorf("%v: output starts %q, want %q", tt.args, stdout[:min(len(stdout), 20)], tt.header)
		}
		name := "get.yaml"
		if strings.HasPrefix(tt.header, "{") {
			name = "get.json"
		}
		got, err := snapshot.Parse([]byte(stdout), name)
		if err != nil {
			t.Fatalf("%v: output does not parse: %v\n%s", tt.args, err, stdout)
		}
		if !proto.Equal(got, tt.want) {
			t.Errorf("%v: got %v, want %v", tt.args, got, tt.want)
		}
	}

	code, _, stderr := sluicectl(t, addr, "get", "--version", "9")
	if code != 1 || !strings.Contains(stderr, "version 9 not found") {
		t.Errorf("get --version 9: status %d, stderr %q", code, stderr)
	}
	code, _, stderr = sluicectl(t, addr, "get", "-o", "xml")
	if code != 2 || !strings.Contains(stderr, `invalid value "xml" for flag -o: must be yaml or json`) {
		t.Errorf("get -o xml: status %d, stderr %q", code, stderr)
	}

	code, stdout, _ := sluicectl(t, addr, "history")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("history: status %d, output:\n%s", code, stdout)
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "VERSION CREATED AUTHOR GROUP REFUSED-BY CHANGES COMMENT" {
		t.Errorf("history header = %q", lines[0])
	}
	if !strings.HasPrefix(lines[1], "2* ") || !strings.Contains(lines[1], "~ cluster web: endpoint web2 weight 1 -> 3; +endpoint web3") {
		t.Errorf("history current row = %q", lines[1])
	}
	if !strings.HasPrefix(lines[2], "1 ") || !strings.Contains(lines[2], "+ cluster web; + listener public; + listener db") {
		t.Errorf("history first row = %q", lines[2])
	}
}

func TestNodesAndConns(t *testing.T) {
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cp := &fakeCP{
		nodes: []*sluicev1.NodeStatus{
			{Id: "dp-1", Labels: map[string]string{"zone": "a", "group": "edge"}, Connected: true, AckedVersion: 4, SentVersion: 4, Group: "edge"},
			{Id: "dp-2", Connected: false, AckedVersion: 3, SentVersion: 5, NackedVersion: 5, NackError: "listener public:\nbind: address already in use", Group: "default"},
			{Id: "dp-3", Connected: true, Draining: true, AckedVersion: 4, SentVersion: 4, GroupProblem: "no group's selector matches its labels"},
		},
		records: []*sluicev1.ConnRecord{
			{NodeId: "dp-1", Listener: "public", ClientAddress: "10.1.1.1:50000", Cluster: "web", Endpoint: "web2",
				Start: timestamppb.New(start), Duration: durationpb.New(1500 * time.Millisecond),
				BytesIn: 512, BytesOut: 3 << 20, Requests: 7, CloseReason: sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED,
				FailedRequests: 3, Failures: []sluicev1.CloseReason{sluicev1.CloseReason_CLOSE_REASON_SERVER_TIMEOUT, sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT}},
			{NodeId: "dp-1", Listener: "public", ClientAddress: "10.1.1.3:50003",
				Start: timestamppb.New(start), Duration: durationpb.New(0), Requests: 1,
				CloseReason: sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST, FailedRequests: 1, Failures: []sluicev1.CloseReason{sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST}},
			{NodeId: "dp-2", Listener: "db", ClientAddress: "10.1.1.2:50001",
				Start: timestamppb.New(start), Duration: durationpb.New(0), CloseReason: sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT},
			{NodeId: "dp-2", Listener: "db", ClientAddress: "192.0.2.9:50002",
				Start: timestamppb.New(start), Duration: durationpb.New(0), CloseReason: sluicev1.CloseReason_CLOSE_REASON_DENIED, Rule: "blacklist"},
		},
	}
	addr := startCP(t, cp)

	code, stdout, stderr := sluicectl(t, addr, "nodes")
	if code != 0 {
		t.Fatalf("nodes: status %d: %s", code, stderr)
	}
	rows := tableRows(stdout)
	wantRows := [][]string{
		{"ID", "LABELS", "GROUP", "STATE", "APPLIED", "SENT", "LAST-NACK"},
		{"dp-1", "group=edge,zone=a", "edge", "connected", "4", "4", "-"},
		{"dp-2", "-", "default", "disconnected", "3", "5", "v5: listener public: bind: address already in use"},
		{"dp-3", "-", "none (no group's selector matches its labels)", "draining", "4", "4", "-"},
	}
	compareRows(t, "nodes", rows, wantRows)

	// --group lists the nodes a group takes; a group that does not exist
	// is an error, not an empty list.
	code, stdout, stderr = sluicectl(t, addr, "nodes", "--group", "edge")
	if code != 0 {
		t.Fatalf("nodes --group edge: status %d: %s", code, stderr)
	}
	compareRows(t, "nodes --group edge", tableRows(stdout), wantRows[:2])
	code, stdout, stderr = sluicectl(t, addr, "nodes", "--group", "edg")
	if want := `sluicectl nodes: group "edg" does not exist, did you mean "edge"?` + "\n"; code != 1 || stderr != want || stdout != "" {
		t.Errorf("nodes --group edg: status %d, stdout %q, stderr %q; want 1 and %q", code, stdout, stderr, want)
	}

	// Replicas on one etcd name where each node is.
	cp.nodes[0].Replica, cp.nodes[1].Replica, cp.nodes[2].Replica = "cp-a:7070", "cp-b:7070", "cp-a:7070"
	code, stdout, stderr = sluicectl(t, addr, "nodes")
	if code != 0 {
		t.Fatalf("nodes: status %d: %s", code, stderr)
	}
	compareRows(t, "nodes on replicas", tableRows(stdout), [][]string{
		{"ID", "LABELS", "GROUP", "STATE", "REPLICA", "APPLIED", "SENT", "LAST-NACK"},
		{"dp-1", "group=edge,zone=a", "edge", "connected", "cp-a:7070", "4", "4", "-"},
		{"dp-2", "-", "default", "disconnected", "cp-b:7070", "3", "5", "v5: listener public: bind: address already in use"},
		{"dp-3", "-", "none (no group's selector matches its labels)", "draining", "cp-a:7070", "4", "4", "-"},
	})

	code, stdout, _ = sluicectl(t, addr, "conns", "--limit", "10", "--node", "dp-1", "--group", "edge", "--listener", "public", "--cluster", "web", "--endpoint", "web2",
		"--reason", "client_closed,Shutdown", "--min-duration", "1s")
	if code != 0 {
		t.Fatalf("conns: status %d", code)
	}
	startText := start.Local().Format("2006-01-02 15:04:05")
	rows = tableRows(stdout)
	wantRows = [][]string{
		{"START", "NODE", "LISTENER", "CLIENT", "CLUSTER/ENDPOINT", "DURATION", "IN", "OUT", "REQS", "REASON"},
		{startText, "dp-1", "public", "10.1.1.1:50000", "web/web2", "1.5s", "512B", "3.0MiB", "7", "client_closed (3 failed: server_timeout, no_endpoint)"},
		{startText, "dp-1", "public", "10.1.1.3:50003", "-", "0s", "0B", "0B", "1", "bad_request"},
		{startText, "dp-2", "db", "10.1.1.2:50001", "-", "0s", "0B", "0B", "0", "no_endpoint"},
		{startText, "dp-2", "db", "192.0.2.9:50002", "-", "0s", "0B", "0B", "0", "denied by blacklist"},
	}
	compareRows(t, "conns", rows, wantRows)
	if got := cp.conns[0]; got.GetLimit() != 10 || got.GetNodeId() != "dp-1" || got.GetGroup() != "edge" || got.GetListener() != "public" || got.GetCluster() != "web" || got.GetEndpoint() != "web2" ||
		!slices.Equal(got.GetReasons(), []sluicev1.CloseReason{sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED, sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN}) ||
		got.GetMinDuration().AsDuration() != time.Second {
		t.Errorf("conns request = %v; want limit 10, node dp-1, group edge, listener public, cluster web, endpoint web2, reasons client_closed and shutdown, min 1s", got)
	}
	if code, _, stderr := sluicectl(t, addr, "conns", "--reason", "closed"); code != 2 || !strings.Contains(stderr, `--reason "closed" is not one of client_closed, server_closed`) {
		t.Errorf("conns --reason closed: exit %d, stderr %q; want 2 and the reasons", code, stderr)
	}
	if code, _, stderr := sluicectl(t, addr, "conns", "--reason", "CLOSE_REASON_SHUTDOWN"); code != 0 ||
		!slices.Equal(cp.conns[len(cp.conns)-1].GetReasons(), []sluicev1.CloseReason{sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN}) {
		t.Errorf("conns --reason CLOSE_REASON_SHUTDOWN, as -o json writes it: exit %d, stderr %q, request %v", code, stderr, cp.conns[len(cp.conns)-1])
	}
	if code, _, stderr := sluicectl(t, addr, "conns", "--reason", "client_closed,shutdwn"); code != 2 || !strings.Contains(stderr, `--reason "shutdwn" is not a reason, did you mean "shutdown"? (one of client_closed, server_closed`) {
		t.Errorf("conns --reason shutdwn: exit %d, stderr %q; want 2 and shutdown suggested", code, stderr)
	}

	code, stdout, _ = sluicectl(t, addr, "nodes", "-o", "json")
	for _, w := range []string{`"id": "dp-2"`, `"connected": false`, `"draining": true`, `"nacked_version": "5"`, `"nack_error": "listener public:\nbind: address already in use"`} {
		if code != 0 || !strings.Contains(stdout, w) {
			t.Errorf("nodes -o json lacks %s:\n%s", w, stdout)
		}
	}
	code, stdout, _ = sluicectl(t, addr, "conns", "-o", "json")
	for _, w := range []string{`"close_reason": "CLOSE_REASON_CLIENT_CLOSED"`, `"bytes_out": "3145728"`, `"client_address": "10.1.1.2:50001"`} {
		if code != 0 || !strings.Contains(stdout, w) {
			t.Errorf("conns -o json lacks %s:\n%s", w, stdout)
		}
	}
}

// tableRows splits tabwriter output into rows of cells (cells are separated
// by two or more spaces; a cell may hold single spaces).
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

// compareRows compares tables cell by cell.
func compareRows(t *testing.T, what string, got, want [][]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d:\n%q", what, len(got), len(want), got)
	}
	for i := range want {
		g, w := strings.Join(got[i], " | "), strings.Join(want[i], " | ")
		if g != w {
			t.Errorf("%s row %d:\n got: %s\nwant: %s", what, i, g, w)
		}
	}
}

func TestUnreachableControlPlane(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now

	for _, args := range [][]string{{"nodes"}, {"apply", "-f", quickstart}, {"get"}} {
		begin := time.Now()
		code, stdout, stderr := sluicectl(t, addr, append([]string{"--timeout", "3s"}, args...)...)
		if code != 1 {
			t.Errorf("%v: status %d, want 1", args, code)
		}
		if stdout != "" {
			t.Errorf("%v: stdout %q, want nothing", args, stdout)
		}
		if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 || !strings.Contains(stderr, "cannot reach the control plane at "+addr) {
			t.Errorf("%v: stderr = %q, want one line naming %s", args, stderr, addr)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("%v: took %v, want at most the 3s timeout", args, d)
		}
	}
}

// TestControlPlaneAtHTTPAddress: --cp given the control plane's --http
// address (its dashboard, which make run prints) says so, rather than
// suggest TLS.
func TestControlPlaneAtHTTPAddress(t *testing.T) {
	web := httptest.NewServer(http.NotFoundHandler())
	defer web.Close()
	addr := strings.TrimPrefix(web.URL, "http://")
	code, stdout, stderr := sluicectl(t, addr, "--timeout", "3s", "nodes")
	want := "(it answers HTTP/1.1: is it the control plane's --http address? --cp takes its gRPC --listen address, 127.0.0.1:7070 by default)\n"
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "sluicectl: cannot reach the control plane at "+addr+": ") || !strings.HasSuffix(stderr, want) {
		t.Errorf("nodes at an HTTP address: status %d, stdout %q, stderr %q; want status 1 and a line that ends %q", code, stdout, stderr, want)
	}
}

func TestControlPlaneFromEnvironment(t *testing.T) {
	addr := startCP(t, &fakeCP{nodes: []*sluicev1.NodeStatus{{Id: "dp-env"}}})
	t.Setenv("SLUICE_CP", addr)
	code, stdout, stderr := sluicectl(t, "", "nodes")
	if code != 0 || !strings.Contains(stdout, "dp-env") {
		t.Errorf("nodes via $SLUICE_CP: status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// The global flags also work after the command, where the habit of kubectl
// and etcdctl puts them; there they win over the ones before it.
func TestGlobalFlagsAfterTheCommand(t *testing.T) {
	addr := startCP(t, &fakeCP{nodes: []*sluicev1.NodeStatus{{Id: "dp-after"}}})
	for _, args := range [][]string{
		{"nodes", "--cp", addr},
		{"nodes", "--cp=" + addr, "-o", "json"},
		{"--cp", "127.0.0.1:1", "nodes", "--cp", addr},
		{"nodes", "--timeout", "3s", "--cp", addr},
	} {
		code, stdout, stderr := sluicectl(t, "", args...)
		if code != 0 || !strings.Contains(stdout, "dp-after") {
			t.Errorf("%v: status %d, stdout %q, stderr %q; want 0 and node dp-after", args, code, stdout, stderr)
		}
	}
	// A set-weight's positional arguments around them.
	code, _, stderr := sluicectl(t, "", "set-weight", "--cp", addr, "web/web1", "--timeout", "0s", "3")
	if want := "sluicectl: --timeout must be positive\n"; code != 2 || stderr != want {
		t.Errorf("--timeout 0s after the command: status %d, stderr %q; want 2, %q", code, stderr, want)
	}
	// An address without a port would dial :443.
	code, _, stderr = sluicectl(t, "", "nodes", "--cp", "127.0.0.1")
	if want := "sluicectl: --cp: \"127.0.0.1\" has no port; give the control plane's host:port (its --listen address), e.g. 127.0.0.1:7070\n"; code != 2 || stderr != want {
		t.Errorf("--cp without a port: status %d, stderr %q; want 2, %q", code, stderr, want)
	}
	code, stdout, _ := sluicectl(t, "", "nodes", "--help")
	if want := "\nThe global flags (--cp, --timeout, --token, --ca, --cert, --key) go before\nor after the command"; code != 0 || !strings.Contains(stdout, want) || strings.Contains(stdout, "\n  -cp") {
		t.Errorf("nodes --help: status %d, stdout:\n%s\nwant the global flags named once, not listed as its own", code, stdout)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
		notStderr  string // a usage error is its line and synopsis, not the whole usage
	}{
		{args: nil, wantCode: 2, wantStderr: "Usage: sluicectl"},
		{args: []string{"frobnicate"}, wantCode: 2, wantStderr: `unknown command "frobnicate"`},
		{args: []string{"--help"}, wantCode: 0, wantStdout: "Commands:"},
		{args: []string{"apply"}, wantCode: 2, wantStderr: "-f is required"},
		{args: []string{"diff"}, wantCode: 2, wantStderr: "-f is required"},
		{args: []string{"apply", "--help"}, wantCode: 0, wantStdout: "-dry-run"},
		{args: []string{"conns", "--help"}, wantCode: 0, wantStdout: "-endpoint E"},
		{args: []string{"--help"}, wantCode: 0, wantStdout: "  set-weight         set one endpoint's weight"},
		{args: []string{"--help"}, wantCode: 0, wantStdout: "  shutdown-sessions  close every connection to one endpoint"},
		{args: []string{"stats", "--help"}, wantCode: 0, wantStdout: "Usage: sluicectl stats [--node ID] [--group GROUP] [--cluster NAME] [-o table|json]"},
		{args: []string{"stats", "-o", "yaml"}, wantCode: 2, wantStderr: `invalid value "yaml" for flag -o: must be table or json`},
		{args: []string{"shutdown-sessions"}, wantCode: 2, wantStderr: "missing CLUSTER/ENDPOINT"},
		{args: []string{"shutdown-sessions", "web"}, wantCode: 2, wantStderr: `want CLUSTER/ENDPOINT, not "web"`},
		{args: []string{"drain", "--help"}, wantCode: 0, wantStdout: "Usage: sluicectl drain CLUSTER/ENDPOINT [--group NAME] [--dry-run] [--comment TEXT] [--if-version V] [--wait [--wait-timeout D] [--min-nodes N]]\n"},
		{args: []string{"set-weight", "--help"}, wantCode: 0, wantStdout: "-comment TEXT"},
		{args: []string{"nodes", "extra"}, wantCode: 2, wantStderr: `unexpected argument "extra"`},
		// Without --canary these would be dropped, and the version go to every node.
		{args: []string{"apply", "-f", "snap.yaml", "--canary-window", "5s"}, wantCode: 2,
			wantStderr: "sluicectl apply: --canary-window is for a staged rollout: give --canary SHARE too\n"},
		{args: []string{"apply", "-f", "snap.yaml", "--canary-max-errors", "1%"}, wantCode: 2,
			wantStderr: "sluicectl apply: --canary-max-errors is for a staged rollout: give --canary SHARE too\n"},
		{args: []string{"apply", "-f", "snap.yaml", "--canary-min-requests", "100"}, wantCode: 2,
			wantStderr: "sluicectl apply: --canary-min-requests is for a staged rollout: give --canary SHARE too\n"},
		{args: []string{"apply", "-f", "snap.yaml", "--canary", "150%"}, wantCode: 2,
			wantStderr: "sluicectl apply: --canary 150%: want a percent from 1% to 100% of the group\n"},
		{args: []string{"apply", "-f", "snap.yaml", "--canary", "0%"}, wantCode: 2,
			wantStderr: "sluicectl apply: --canary 0%: want a percent from 1% to 100% of the group\n"},
		{args: []string{"apply", "-f", "snap.yaml", "--canary", "0"}, wantCode: 2,
			wantStderr: "sluicectl apply: --canary 0: want a count of 1 node or more, or a percent such as 10%\n"},
		{args: []string{"apply", "-f", "snap.yaml", "--canary", "ten"}, wantCode: 2,
			wantStderr: "sluicectl apply: --canary \"ten\": want a percent such as 10% or a count of nodes such as 2\n"},
		{args: []string{"apply", "-f", "snap.yaml", "--canary", "1", "--canary-window", "0s"}, wantCode: 2,
			wantStderr: "sluicectl apply: --canary-window 0s: want 1s to 24h, how long the canaries must run the version\n"},
		{args: []string{"apply", "-f", "snap.yaml", "--canary-deadline", "1h"}, wantCode: 2,
			wantStderr: "sluicectl apply: --canary-deadline is for a staged rollout: give --canary SHARE too\n"},
		{args: []string{"apply", "-f", "snap.yaml", "--canary", "1", "--canary-deadline", "48h"}, wantCode: 2,
			wantStderr: "sluicectl apply: --canary-deadline 48h0m0s: want 1s to 24h, how long the rollout may wait for its canaries\n"},
		{args: []string{"apply", "-f", "snap.yaml", "--wait-timeout", "5s"}, wantCode: 2,
			wantStderr: "sluicectl apply: --wait-timeout is for --wait: give --wait too\n"},
		{args: []string{"enable", "web/a", "--wait-timeout", "5s"}, wantCode: 2,
			wantStderr: "sluicectl enable: --wait-timeout is for --wait: give --wait too\n"},
		{args: []string{"rollback", "3", "--min-nodes", "2"}, wantCode: 2,
			wantStderr: "sluicectl rollback: --min-nodes is for --wait: give --wait too\n"},
		{args: []string{"apply", "snap.yaml"}, wantCode: 2, wantStderr: `sluicectl apply: unexpected argument "snap.yaml": the snapshot goes after -f (-f snap.yaml)`},
		{args: []string{"diff", "-f", "a.yaml", "b.yaml"}, wantCode: 2, wantStderr: "sluicectl diff: unexpected argument \"b.yaml\"\n"},
		{args: []string{"history", "--bogus"}, wantCode: 2, notStderr: "Flags:",
			wantStderr: "sluicectl history: flag provided but not defined: -bogus\nUsage: sluicectl history [--group NAME] [--limit N] [-o table|json]\nRun 'sluicectl history --help' for more.\n"},
		{args: []string{"--bogus", "nodes"}, wantCode: 2, notStderr: "Commands:",
			wantStderr: "sluicectl: flag provided but not defined: -bogus\nRun 'sluicectl --help' for the commands and global flags.\n"},
		{args: []string{"aply"}, wantCode: 2, notStderr: "Commands:", wantStderr: `sluicectl: unknown command "aply", did you mean "apply"?`},
		{args: []string{"--version"}, wantCode: 0, wantStdout: "sluicectl "},
		// 0 is no stored version: it must not print the current snapshot.
		{args: []string{"get", "--version", "0"}, wantCode: 2,
			wantStderr: "sluicectl get: --version must be a stored version number (1 or more), not 0\n"},
		{args: []string{"token", "--help"}, wantCode: 0, wantStdout: "Flags:\n  -name NAME\n"},
		{args: []string{"cert", "--help"}, wantCode: 0, wantStdout: "Usage: sluicectl cert issue|revoke|revoked [flags]\n"},
		{args: []string{"cert", "issue", "--help"}, wantCode: 0, wantStdout: "Flags:\n  -node ID\n"},
		{args: []string{"cert", "revoke", "--help"}, wantCode: 0, wantStdout: "Flags:\n  -comment string\n"},
		{args: []string{"cert", "revoke"}, wantCode: 2, wantStderr: "sluicectl cert revoke: --node is required\n"},
		{args: []string{"cert", "revoke", "--node", "bad id"}, wantCode: 2, wantStderr: `sluicectl cert revoke: --node "bad id" is not a valid node id`},
		{args: []string{"cert", "renew"}, wantCode: 2, wantStderr: "sluicectl cert: there is no \"cert renew\": want cert issue, cert revoke or cert revoked\n"},
		{args: []string{"cert", "issue", "--node", "n1", "--valid", "100000h"}, wantCode: 2,
			wantStderr: "sluicectl cert issue: --valid 100000h0m0s: want more than 0 and at most 10 years (87600h)\n"},
		{args: []string{"top", "--interval", "2"}, wantCode: 2, wantStderr: `invalid value "2" for flag -interval: parse error (a duration has a unit: 30s, 1m30s, 500ms)`},
		{args: []string{"set-weight", "web/web1", "-1"}, wantCode: 2, wantStderr: "sluicectl set-weight: flag provided but not defined: -1 (no number here is negative)\n"},
		{args: []string{"conns", "--limit", "-1"}, wantCode: 2, wantStderr: `invalid value "-1" for flag -limit: parse error (a whole number, 0 or more)`},
	}
	for _, tt := range tests {
		code, stdout, stderr := sluicectl(t, "127.0.0.1:1", tt.args...)
		if code != tt.wantCode {
			t.Errorf("%v: status %d, want %d", tt.args, code, tt.wantCode)
		}
		if tt.wantStdout != "" && !strings.Contains(stdout, tt.wantStdout) {
			t.Errorf("%v: stdout lacks %q:\n%s", tt.args, tt.wantStdout, stdout)
		}
		if tt.wantStderr != "" && !strings.Contains(stderr, tt.wantStderr) {
			t.Errorf("%v: stderr lacks %q:\n%s", tt.args, tt.wantStderr, stderr)
		}
		if tt.notStderr != "" && strings.Contains(stderr, tt.notStderr) {
			t.Errorf("%v: stderr has %q:\n%s", tt.args, tt.notStderr, stderr)
		}
	}
}

func TestStats(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock = func() time.Time { return now }
	t.Cleanup(func() { clock = time.Now })
	ts := func(ago time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(-ago)) }
	cp := &fakeCP{statsOut: &sluicev1.GetStatsResponse{Nodes: []*sluicev1.NodeStats{
		{NodeId: "dp-1", Connected: true, Version: "7", ReportedAt: ts(2 * time.Second), Endpoints: []*sluicev1.EndpointStats{
			{Cluster: "web", Endpoint: "web1", Address: "10.0.0.1:80", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP, Weight: 2,
				Active: 3, Conns: 5, Requests: 1234, BytesIn: 3 << 20, BytesOut: 512, Responses_5Xx: 7, ConnectErrors: 1, Since: ts(3*time.Hour + 7*time.Minute)},
			{Cluster: "web", Endpoint: "web2", Address: "10.0.0.2:80", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_DOWN, Weight: 1,
				ConnectErrors: 12, Since: ts(65 * time.Second), Detail: "connection\nrefused"},
			{Cluster: "web", Endpoint: "sorry", Address: "10.0.0.9:80", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_CHECKING, Weight: 1, Backup: true},
		}},
		{NodeId: "dp-2", Connected: false, ReportedAt: ts(50 * time.Hour), Endpoints: []*sluicev1.EndpointStats{
			// Drained 2h before its last report: SINCE stops there.
			{Cluster: "web", Endpoint: "web1", Address: "10.0.0.1:80", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_DRAINING, Weight: 2, Since: ts(52 * time.Hour)},
		}},
		{NodeId: "dp-3", Connected: true, Replica: "cp-b"},
	}}}
	cp.statsOut.Nodes[0].Group, cp.statsOut.Nodes[1].Group = "edge", "default"
	addr := startCP(t, cp)
	code, stdout, stderr := sluicectl(t, addr, "stats", "--node", "dp-1", "--cluster", "web")
	// cp-b's name is no address to ask it at (fleetStats; its own test
	// is TestReadsAskOtherReplicas).
	if want := "sluicectl stats: replica cp-b could not be asked: its name is not a HOST:PORT address to call it at; ask it with --cp\n"; code != 1 || stderr != want {
		t.Fatalf("stats: status %d, stderr %q; want 1 and %q", code, stderr, want)
	}
	if got := cp.stats[0]; got.GetNodeId() != "dp-1" || got.GetCluster() != "web" {
		t.Errorf("request %v, want node dp-1, cluster web", got)
	}
	header := []string{"CLUSTER/ENDPOINT", "ADDRESS", "HEALTH", "WEIGHT", "ACTIVE", "CONNS", "REQUESTS", "BYTES IN", "BYTES OUT", "5XX", "CONN ERR", "SINCE", "DETAIL"}
	compareRows(t, "stats", tableRows(stdout), [][]string{
		{"dp-1 (connected, version 7, reported 2s ago)"},
		header,
		{"web/web1", "10.0.0.1:80", "UP", "2", "3", "5", "1234", "3.0MiB", "512B", "7", "1", "3h07m", "-"},
		{"web/web2", "10.0.0.2:80", "DOWN", "1", "0", "0", "0", "0B", "0B", "0", "12", "1m05s", "connection refused"},
		{"web/sorry", "10.0.0.9:80", "CHECKING", "1 (backup)", "0", "0", "0", "0B", "0B", "0", "0", "-", "-"},
		nil,
		{"dp-2 (disconnected, last report 2d02h ago)"},
		header,
		{"web/web1", "10.0.0.1:80", "DRAINING", "2", "0", "0", "0", "0B", "0B", "0", "0", "2h00m", "-"},
		nil,
		{"dp-3 (connected to replica cp-b, which has its stats)"},
	})

	// --group keeps the group's nodes, and those whose group is not
	// known here (their replica has their stats).
	code, stdout, _ = sluicectl(t, addr, "stats", "--group", "default")
	compareRows(t, "stats --group default", tableRows(stdout), [][]string{
		{"dp-2 (disconnected, last report 2d02h ago)"},
		header,
		{"web/web1", "10.0.0.1:80", "DRAINING", "2", "0", "0", "0", "0B", "0B", "0", "0", "2h00m", "-"},
		nil,
		{"dp-3 (connected to replica cp-b, which has its stats)"},
	})
	if code != 1 {
		t.Errorf("stats --group default: status %d, want 1 (cp-b not asked)", code)
	}
	if code, _, stderr := sluicectl(t, addr, "stats", "--group", "nowhere"); code != 1 || !strings.Contains(stderr, `group "nowhere" does not exist (the groups are: `) {
		t.Errorf("stats --group nowhere: status %d, stderr %q", code, stderr)
	}

	code, stdout, _ = sluicectl(t, addr, "stats", "-o", "json")
	for _, w := range []string{`"node_id": "dp-2"`, `"health": "ENDPOINT_HEALTH_DOWN"`, `"responses_5xx": "7"`, `"detail": "connection\nrefused"`} {
		if code != 1 || !strings.Contains(stdout, w) {
			t.Errorf("stats -o json lacks %s:\n%s", w, stdout)
		}
	}

	cp.statsOut = nil
	code, stdout, _ = sluicectl(t, addr, "stats", "--cluster", "api")
	if code != 0 || strings.TrimSpace(stdout) != `no node has reported endpoint stats for cluster "api"` {
		t.Errorf("stats with nothing reported: status %d, %q", code, stdout)
	}
}

func TestShutdownSessionsCommand(t *testing.T) {
	cp := &fakeCP{results: []*sluicev1.CommandResult{{NodeId: "node-1", Closed: 37}, {NodeId: "node-22", Closed: 1}}}
	addr := startCP(t, cp)
	code, stdout, stderr := sluicectl(t, addr, "shutdown-sessions", "web/web1")
	if code != 0 || stdout != "node-1   closed 37 connections\nnode-22  closed 1 connection\n" || stderr != "" {
		t.Errorf("shutdown-sessions: status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := cp.shutdown[0]; got.GetCluster() != "web" || got.GetEndpoint() != "web1" {
		t.Errorf("request %v, want web/web1", got)
	}

	cp.results = append(cp.results, &sluicev1.CommandResult{NodeId: "node-3", Error: "no reply within 5s"})
	code, stdout, _ = sluicectl(t, addr, "shutdown-sessions", "web/web1")
	if code != 1 || !strings.Contains(stdout, "node-3   failed: no reply within 5s\n") || !strings.Contains(stdout, "closed 37 connections") {
		t.Errorf("with a node failing: status %d, stdout %q; want 1, every node's line", code, stdout)
	}

	code, stdout, stderr = sluicectl(t, addr, "shutdown-sessions", "web/web9")
	if code != 1 || stdout != "" || strings.TrimSpace(stderr) != `sluicectl shutdown-sessions: cluster "web" has no endpoint "web9" (it has: web1, web2, sorry)` {
		t.Errorf("unknown endpoint: status %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	cp.results = nil
	code, stdout, _ = sluicectl(t, addr, "shutdown-sessions", "web/web1")
	if code != 0 || !strings.Contains(stdout, "no node is connected") {
		t.Errorf("no node: status %d, stdout %q", code, stdout)
	}
	code, stdout, _ = sluicectl(t, addr, "shutdown-sessions", "web/web1", "--group", "edge")
	if got := cp.shutdown[len(cp.shutdown)-1].GetGroup(); code != 0 || got != "edge" || stdout != "no node of group edge is connected: nothing to close\n" {
		t.Errorf("--group edge with no node: status %d, stdout %q, request's group %q", code, stdout, got)
	}

	// A replica that cannot read etcd says so with UNAVAILABLE and a
	// detail (configapi.TestShutdownSessionsNeedsTheWholeFleet): it was
	// reached, so that is not what sluicectl says.
	st, err := status.New(codes.Unavailable, "cannot learn which nodes the other replicas have (etcdserver: request timed out), so the command was sent to no node").
		WithDetails(&errdetails.ErrorInfo{Reason: "FLEET_UNREADABLE", Domain: "sluice"})
	if err != nil {
		t.Fatal(err)
	}
	cp.shutErr = st.Err()
	code, stdout, stderr = sluicectl(t, addr, "shutdown-sessions", "web/web1")
	if want := "sluicectl shutdown-sessions: " + st.Message() + "\n"; code != 1 || stdout != "" || stderr != want {
		t.Errorf("etcd unreadable: status %d, stdout %q, stderr %q; want 1, stderr %q", code, stdout, stderr, want)
	}
}

// TestReadsSayWhatTheyLack: nodes, conns and stats print what they got
// and exit 1 when the control plane could not read the other replicas'
// nodes, saying why.
func TestReadsSayWhatTheyLack(t *testing.T) {
	cp := &fakeCP{
		nodes:   []*sluicev1.NodeStatus{{Id: "dp-1", Connected: true, Replica: "cp-a:7070"}},
		records: []*sluicev1.ConnRecord{{NodeId: "dp-1", Listener: "public", ClientAddress: "10.1.1.1:50000", CloseReason: sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED}},
	}
	addr := startCP(t, cp)
	cp.partial = "the nodes of other control-plane replicas could not be read (etcdserver: request timed out); only those of 127.0.0.1:7070, the replica that answered, are listed"
	for _, args := range [][]string{{"nodes"}, {"nodes", "-o", "json"}, {"conns"}, {"conns", "-o", "json"}, {"stats"}, {"stats", "-o", "json"}} {
		code, stdout, stderr := sluicectl(t, addr, args...)
		want := "sluicectl " + args[0] + ": " + cp.partial + "\n"
		if code != 1 || stderr != want || stdout == "" {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want 1, what it got, and %q", args, code, stdout, stderr, want)
		}
	}
}
