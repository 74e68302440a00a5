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
				return []string{"no snapshot file in " + dir + " lists clusters or listeners: applied, they would remove every cluster and listener. To remove them all on purpose, give one `clusters: []`"}
			},
		},
		{
			name:  "files cut short after the key",
			files: map[string]string{"a.yaml": "clusters:\n", "b.json": "{}", "c.yaml": "listeners: ~\n"},
			want: func(dir string) []string {
				return []string{"no snapshot file in " + dir + " lists clusters or listeners: applied, they would remove every cluster and listener. To remove them all on purpose, give one `clusters: []`"}
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
	dir := writeFiles(t, map[string]string{
		"empty.yaml": "", "comments.yaml": "# todo\n",
		// Cut short after the first line, or a template whose variables
		// came out empty.
		"cut.yaml": "clusters:\n", "nulls.yaml": "clusters: ~\nlisteners:\n", "braces.json": "{}\n",
		"none.yaml": "clusters: []\n", "no-listeners.json": `{"listeners": []}`,
		"merged.yaml": "clusters: []\n<<: {listeners: []}\n",
	})
	for name, want := range map[string]string{
		"empty.yaml":    "the file holds nothing: applied, it would remove every cluster and listener. To remove them all on purpose, give it `clusters: []`",
		"comments.yaml": "the file holds nothing: applied, it would remove every cluster and listener. To remove them all on purpose, give it `clusters: []`",
		"cut.yaml":      "the file lists no clusters and no listeners: applied, it would remove every cluster and listener. To remove them all on purpose, give it `clusters: []`",
		"nulls.yaml":    "the file lists no clusters and no listeners: applied, it would remove every cluster and listener. To remove them all on purpose, give it `clusters: []`",
		"braces.json":   "the file lists no clusters and no listeners: applied, it would remove every cluster and listener. To remove them all on purpose, give it `clusters: []`",
	} {
		s, err := Load(filepath.Join(dir, name))
		if got := errorLines(err); s != nil || !equalLines(got, []string{want}) {
			t.Errorf("Load(%s) = %v, %q; want %q", name, s, got, want)
		}
	}
	for _, name := range []string{"none.yaml", "no-listeners.json", "merged.yaml"} {
		if s, err := Load(filepath.Join(dir, name)); err != nil || len(s.GetClusters())+len(s.GetListeners()) != 0 {
			t.Errorf("Load(%s) = %v, %v; want an empty snapshot", name, s, err)
		}
	}
}

// TestLoadSeveral: several paths, as kubectl apply takes several -f, are
// merged in the order given, a directory's files in name order; a name
// defined twice, a file named twice, or a set that lists nothing is
// refused.
func TestLoadSeveral(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"web.yaml":     "clusters:\n  - name: web\nlisteners:\n  - {name: public, address: \":80\", protocol: HTTP, default_cluster: web}\n",
		"d/b-api.yaml": "clusters:\n  - name: api\n",
		"d/a-db.yaml":  "clusters:\n  - name: db\n",
		"dup.yaml":     "clusters:\n  - name: api\n",
		"empty.yaml":   "",
		"cut.yaml":     "clusters:\n",
		"e/blank.yml":  "# later\n",
	})
	p := func(name string) string { return filepath.Join(dir, name) }
	got, err := Load(p("d"), p("web.yaml"), p("empty.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &sluicev1.Snapshot{
		Clusters:  []*sluicev1.Cluster{{Name: "db"}, {Name: "api"}, {Name: "web"}},
		Listeners: []*sluicev1.Listener{{Name: "public", Address: ":80", Protocol: sluicev1.Protocol_PROTOCOL_HTTP, DefaultCluster: "web"}},
	}
	if !proto.Equal(got, want) {
		t.Errorf("Load(d, web.yaml, empty.yaml):\n got: %v\nwant: %v", got, want)
	}
	for _, tt := range []struct {
		paths []string
		want  string
	}{
		{[]string{p("d"), p("dup.yaml")}, `cluster "api" is defined in both ` + p("d/b-api.yaml") + ":2 and " + p("dup.yaml") + ":2"},
		{[]string{p("web.yaml"), p("d"), p("web.yaml")}, p("web.yaml") + " is given twice"},
		{[]string{p("d"), p("d/a-db.yaml")}, p("d/a-db.yaml") + " is given twice: in " + p("d") + ", and by itself"},
		{[]string{p("d/a-db.yaml"), p("d")}, p("d/a-db.yaml") + " is given twice: by itself, and in " + p("d")},
		{[]string{p("d"), p("e"), p("d") + "/"}, p("d") + "/ is given twice"},
		{[]string{p("empty.yaml"), p("cut.yaml"), p("e")}, "no snapshot file in " + p("empty.yaml") + ", " + p("cut.yaml") + ", " + p("e") + " lists clusters or listeners: applied, they would remove every cluster and listener. To remove them all on purpose, give one `clusters: []`"},
		{[]string{p("web.yaml"), p("nope.yaml")}, p("nope.yaml") + ": no such file or directory"},
	} {
		s, err := Load(tt.paths...)
		if got := errorLines(err); s != nil || !equalLines(got, []string{tt.want}) {
			t.Errorf("Load(%q) = %v, %q; want %q", tt.paths, s, got, tt.want)
		}
	}
}
