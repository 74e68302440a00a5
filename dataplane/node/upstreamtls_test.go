package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/internal/testcert"
)

// TestUpstreamTLSApply: a cluster's ca_file is read at apply; a missing
// or broken file refuses the snapshot (a NACK) naming the cluster and the
// field, and the running one stays. The endpoint's configuration is kept
// while the tls block and the file are unchanged, and renewed when the
// file changes.
func TestUpstreamTLSApply(t *testing.T) {
	n := newNode(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	const tmpl = `
clusters:
  - name: web
    tls: { ca_file: %q }
    endpoints: [{ name: a, address: "127.0.0.1:1" }]
listeners:
  - { name: l, address: %q, protocol: HTTP, default_cluster: web }
`
	addr := freeAddr(t)
	snap := parse(t, tmpl, caFile, addr)

	err := n.Apply("1", snap)
	if err == nil || !strings.Contains(err.Error(), "cluster web: tls.ca_file: open "+caFile) {
		t.Fatalf("missing ca_file: Apply = %v", err)
	}
	if err := os.WriteFile(caFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply("1", snap); err == nil || !strings.Contains(err.Error(), "no PEM CERTIFICATE block found") {
		t.Fatalf("broken ca_file: Apply = %v", err)
	}
	if n.Version() != "" {
		t.Fatalf("a refused snapshot was applied: version %q", n.Version())
	}

	if err := os.WriteFile(caFile, []byte(testcert.NewCA(t).PEM), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply("1", snap); err != nil {
		t.Fatal(err)
	}
	ep := n.clusters["web"].members[0].Endpoint
	first := ep.TLSConfig()
	if first == nil || first.RootCAs == nil || first.ServerName != "127.0.0.1" {
		t.Fatalf("endpoint TLS config = %v, want the CA and server name 127.0.0.1", first)
	}
	if err := n.Apply("2", parse(t, tmpl, caFile, addr)); err != nil {
		t.Fatal(err)
	}
	if ep.TLSConfig() != first {
		t.Error("an apply that changed nothing made a new TLS configuration")
	}
	if err := os.WriteFile(caFile, []byte(testcert.NewCA(t).PEM), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply("3", parse(t, tmpl, caFile, addr)); err != nil {
		t.Fatal(err)
	}
	if ep.TLSConfig() == first {
		t.Error("a renewed ca_file did not take effect")
	}
}
