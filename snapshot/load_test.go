package snapshot

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadDirectory(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"10-web.yaml":     "clusters:\n  - name: web\n",
		"20-api.yml":      "clusters:\n  - name: api\nlisteners:\n  - {name: public, address: \":80\", protocol: HTTP, default_cluster: web}\n",
		"30-db.json":      "{\n\t\"listeners\": [{\"name\": \"db\", \"address\": \":3306\", \"protocol\": \"TCP\", \"default_cluster\": \"api\"}]\n}\n",
		"README.md":       "not a snapshot",
		".#10-web.yaml":   "editor junk: [",
		"sub/other.yaml":  "clusters:\n  - name: nested\n",
		"05-empty.yaml":   "# nothing here yet\n",
		"40-extra.YAML":   "clusters:\n  - name: upper\n",
		"zz-notyaml.yaml": "",
	})
	got, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &sluicev1.Snapshot{
		Clusters: []*sluicev1.Cluster{{Name: "web"}, {Name: "api"}, {Name: "upper"}},
		Listeners: []*sluicev1.Listener{
			{Name: "public", Address: ":80", Protocol: sluicev1.Protocol_PROTOCOL_HTTP, DefaultCluster: "web"},
			{Name: "db", Address: ":3306", Protocol: sluicev1.Protocol_PROTOCOL_TCP, DefaultCluster: "api"},
		},
	}
	if !proto.Equal(got, want) {
		t.Errorf("Load(dir):\n got: %v\nwant: %v", got, want)
	}
}

func TestLoadFaults(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  func(dir string) []string
	}{
		{
			name: "same names in two files",
			files: map[string]string{
				"a.yaml": "clusters: [{name: web}]\nlisteners: [{name: l}]\n",
				"b.yaml": "clusters: [{name: api}, {name: web}]\n",
				"c.yaml": "# the listener\n\nlisteners:\n  - name: l\n",
			},
			want: func(dir string) []string {
				a, b, c := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml"), filepath.Join(dir, "c.yaml")
				return []string{
					`cluster "web" is defined in both ` + a + ":1 and " + b + ":1",
					`listener "l" is defined in both ` + a + ":2 and " + c + ":4",
				}
			},
		},
		{
			name: "faults of every file, each naming its file",
			files: map[string]string{
				"a.yaml": "clusters:\n  - name: web\n    lb_polcy: X\n",
				"b.yaml": "listeners:\n  - name: l\n    protocol: UDP\n",
			},
			want: func(dir string) []string {
				return []string{
					`clusters[0].lb_polcy: unknown field, did you mean "lb_policy"? (` + filepath.Join(dir, "a.yaml") + ":3)",
					`listeners[0].protocol: unknown value "UDP"; valid: TCP, HTTP (` + filepath.Join(dir, "b.yaml") + ":3)",
				}
			},
		},
		{
			name:  "only empty files",
			files: map[string]string{"a.yaml": "", "b.yml": "# nothing here yet\n---\n"},
			want: func(dir string) []string {
				return []string{"every snapshot file in " + dir + " is empty: applied, they would remove every cluster and listener. To remove them all on purpose, give one `clusters: []`"}
			},
		},
		{
			name:  "no snapshot files",
			files: map[string]string{"notes.txt": "hi"},
			want: func(dir string) []string {
				return []string{dir + ": no .yaml, .yml or .json files in the directory"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			s, err := Load(dir)
			if s != nil {
				t.Errorf("Load returned a snapshot with faults: %v", s)
			}
			if got, want := errorLines(err), tt.want(dir); !equalLines(got, want) {
				t.Errorf("Load faults:\n got: %q\nwant: %q", got, want)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := writeFiles(t, map[string]string{"web.yaml": minimalYAML})
	s, err := Load(filepath.Join(dir, "web.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(s, mustParse(t, minimalYAML)) {
		t.Errorf("Load(file) differs from Parse")
	}
	missing := filepath.Join(dir, "missing.yaml")
	if _, err := Load(missing); !errors.Is(err, fs.ErrNotExist) || err.Error() != missing+": no such file or directory" {
		t.Errorf("Load(missing) = %v, want a not-exist error that names the file", err)
	}
}

// TestLoadEmptyFile: a file that holds nothing (cut short, emptied by
// mistake) is refused, since applied it would remove every cluster and
// listener; one that says so on purpose is taken.
func TestLoadEmptyFile(t *testing.T) {
	dir := writeFiles(t, map[string]string{"empty.yaml": "", "comments.yaml": "# todo\n", "none.yaml": "clusters: []\n"})
	for _, name := range []string{"empty.yaml", "comments.yaml"} {
		path := filepath.Join(dir, name)
		s, err := Load(path)
		want := "the file holds nothing: applied, it would remove every cluster and listener. To remove them all on purpose, give it `clusters: []`"
		if got := errorLines(err); s != nil || !equalLines(got, []string{want}) {
			t.Errorf("Load(%s) = %v, %q; want %q", name, s, got, want)
		}
	}
	if s, err := Load(filepath.Join(dir, "none.yaml")); err != nil || len(s.GetClusters())+len(s.GetListeners()) != 0 {
		t.Errorf("Load(none.yaml) = %v, %v; want an empty snapshot", s, err)
	}
}
