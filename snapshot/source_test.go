package snapshot

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSourcePlacesMergedPaths: a fault's path in a directory's merged
// snapshot is placed in the file that writes it, at the line of the
// deepest part written out.
func TestSourcePlacesMergedPaths(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"a.yaml": `clusters:
  - name: api
    endpoints: [{ name: a, address: "10.0.0.1:80" }]
listeners:
  - { name: pub, address: ":80", protocol: HTTP, default_cluster: api }
`,
		"b.yaml": `clusters:
  - &spare
    name: spare
    connect_timeout: 2s
  - <<: *spare
    name: web
    endpoints:
      - name: w1
        address: "10.0.0.2:80"
        weight: 300
listeners:
  - name: l
    address: ":81"
    protocol: HTTP
    default_cluster: web
    rules:
      - match: { method: GET }
        route: web
        request_headers:
          set:
            X-A: b
`,
		"c.json": `{"clusters": [{"name": "db",
  "endpoints": [{"name": "d", "address": "10.0.0.3:5432"}]}]}
`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := filepath.Join(dir, "b.yaml")
	s, src, err := LoadSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.GetClusters()) != 4 || len(s.GetListeners()) != 2 {
		t.Fatalf("merged %d clusters and %d listeners, want 4 and 2", len(s.GetClusters()), len(s.GetListeners()))
	}
	a, c := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "c.json")
	for _, tc := range []struct {
		path, local, at string
		written         bool
	}{
		{"clusters[0].endpoints[0].address", "clusters[0].endpoints[0].address", a + ":3", true},
		{"clusters[1].connect_timeout", "clusters[0].connect_timeout", b + ":4", true},
		// Merged (<<) into web from spare: placed where it is written.
		{"clusters[2].connect_timeout", "clusters[1].connect_timeout", b + ":4", true},
		{"clusters[2].endpoints[0].weight", "clusters[1].endpoints[0].weight", b + ":10", true},
		{"clusters[2].endpoints[0]", "clusters[1].endpoints[0]", b + ":8", true},
		// Left at its default: placed at the cluster.
		{"clusters[2].drain_timeout", "clusters[1].drain_timeout", b + ":5", false},
		{"clusters[3].endpoints[0].address", "clusters[0].endpoints[0].address", c + ":2", true},
		{"listeners[0].default_cluster", "listeners[0].default_cluster", a + ":5", true},
		// A list of one written as its item.
		{"listeners[1].rules[0].match.method[0]", "listeners[0].rules[0].match.method[0]", b + ":17", true},
		{"listeners[1].rules[0].request_headers.set[X-A]", "listeners[0].rules[0].request_headers.set[X-A]", b + ":21", true},
		{"listeners[1].rules[3]", "listeners[0].rules[3]", b + ":16", false},
		{"listeners[9].name", "listeners[9].name", "", false},
		{"version", "version", "", false},
	} {
		local, at, written := src.Place(tc.path)
		if local != tc.local || at != tc.at || written != tc.written {
			t.Errorf("Place(%s) = %s at %q (written %v), want %s at %q (written %v)", tc.path, local, at, written, tc.local, tc.at, tc.written)
		}
	}
}
