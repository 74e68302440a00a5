package snapshot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// minimalYAML is the minimal snapshot of DESIGN.md section 3, as written.
const minimalYAML = `clusters:
  - name: web
    lb_policy: ROUND_ROBIN
    health_check: { interval: 2s, fall: 3, rise: 2 }
    endpoints:
      - { name: web1, address: 127.0.0.1:9001, weight: 2 }
      - { name: web2, address: 127.0.0.1:9002, weight: 1 }
      - { name: sorry, address: 127.0.0.1:9009, backup: true }
listeners:
  - name: public
    address: 127.0.0.1:8080
    protocol: HTTP
    default_cluster: web
  - name: db
    address: 127.0.0.1:6663
    protocol: TCP
    default_cluster: web
`

// mustParse parses a test document or fails the test.
func mustParse(t testing.TB, doc string) *sluicev1.Snapshot {
	t.Helper()
	s, err := Parse([]byte(doc), "")
	if err != nil {
		t.Fatalf("Parse(%q): %v", doc, err)
	}
	return s
}

// errorLines renders an error as its lines, for got/want comparisons.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func equalLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMinimalSnapshot(t *testing.T) {
	s := mustParse(t, minimalYAML)
	if err := Validate(s); err != nil {
		t.Fatalf("Validate(minimal) = %v, want nil", err)
	}
	if got, want := len(s.GetClusters()), 1; got != want {
		t.Fatalf("clusters = %d, want %d", got, want)
	}
	c := s.GetClusters()[0]
	if c.GetLbPolicy() != sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN {
		t.Errorf("lb_policy = %v, want LB_POLICY_ROUND_ROBIN", c.GetLbPolicy())
	}
	if got := c.GetHealthCheck().GetInterval().AsDuration().String(); got != "2s" {
		t.Errorf("health_check.interval = %s, want 2s", got)
	}
	eps := c.GetEndpoints()
	if eps[0].Weight == nil || eps[0].GetWeight() != 2 {
		t.Errorf("web1 weight = %v, want 2", eps[0].Weight)
	}
	if eps[2].Weight != nil {
		t.Errorf("sorry weight = %v, want absent", eps[2].GetWeight())
	}
	if !eps[2].GetBackup() {
		t.Errorf("sorry backup = false, want true")
	}
	l := s.GetListeners()
	if l[0].GetProtocol() != sluicev1.Protocol_PROTOCOL_HTTP || l[1].GetProtocol() != sluicev1.Protocol_PROTOCOL_TCP {
		t.Errorf("protocols = %v, %v; want HTTP, TCP", l[0].GetProtocol(), l[1].GetProtocol())
	}
}

func TestQuickstartExample(t *testing.T) {
	const path = "../examples/quickstart.yaml"
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	if err := Validate(s); err != nil {
		t.Fatalf("Validate(%s): %v", path, err)
	}
	want := map[string]string{"web1": "127.0.0.1:9001", "web2": "127.0.0.1:9002", "sorry": "127.0.0.1:9009"}
	for _, e := range s.GetClusters()[0].GetEndpoints() {
		if want[e.GetName()] != e.GetAddress() {
			t.Errorf("endpoint %s address = %s, want %s", e.GetName(), e.GetAddress(), want[e.GetName()])
		}
		delete(want, e.GetName())
	}
	if len(want) > 0 {
		t.Errorf("endpoints missing: %v", want)
	}
	var ls []string
	for _, l := range s.GetListeners() {
		ls = append(ls, l.GetName()+" "+l.GetAddress()+" "+l.GetProtocol().String())
	}
	if got, want := strings.Join(ls, ", "), "public 127.0.0.1:8080 PROTOCOL_HTTP, db 127.0.0.1:6663 PROTOCOL_TCP"; got != want {
		t.Errorf("listeners = %s, want %s", got, want)
	}
}

// TestExamplesValidate: every snapshot under examples/ loads and validates,
// so the README's examples stay true.
func TestExamplesValidate(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		s, err := Load(f)
		if err == nil {
			err = Validate(s)
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
