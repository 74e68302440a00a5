package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatalf("no PEM in %q", p)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssueNode(t *testing.T) {
	ca, _, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _, _ := NewKey()
	// The CSR's names are the node's wish; the certificate's are the CA's.
	csr, _ := NodeCSR("someone-else", key)
	now := time.Now()
	p, notAfter, err := ca.IssueNode("edge-1", csr, 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, p)
	id, err := NodeID(c)
	if err != nil || id != "edge-1" {
		t.Fatalf("NodeID = %q, %v; want edge-1", id, err)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "sluice://node/edge-1" || c.Subject.CommonName != "edge-1" {
		t.Errorf("names: CN %q, URIs %v", c.Subject.CommonName, c.URIs)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ext key usage %v, want client auth only", c.ExtKeyUsage)
	}
	// An hour's CA bounds a day's certificate.
	if !notAfter.Equal(ca.Cert.NotAfter.UTC().Truncate(time.Second)) || !c.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("not after %v (cert %v), want the CA's %v", notAfter, c.NotAfter, ca.Cert.NotAfter)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify as a client: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool}); err == nil {
		t.Error("a node certificate verifies as a server's")
	}

	// A CSR whose signature does not hold is refused.
	bad := []byte(strings.Replace(string(csr), string(csr[80:84]), "AAAA", 1))
	if _, _, err := ca.IssueNode("edge-1", bad, time.Hour, now); err == nil {
		t.Error("a tampered CSR was signed")
	}
	if _, _, err := ca.IssueNode("../x", csr, time.Hour, now); err == nil {
		t.Error("a bad node id was signed")
	}
}

func TestNodeIDRefuses(t *testing.T) {
	u := func(s string) *url.URL { x, _ := url.Parse(s); return x }
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"no URI", &x509.Certificate{}, "not a node certificate"},
		{"other URI", &x509.Certificate{URIs: []*url.URL{u("spiffe://node/edge-1")}}, "not a node certificate"},
		{"CN differs", &x509.Certificate{URIs: []*url.URL{u("sluice://node/edge-1")}}, "common name"},
		{"two nodes", &x509.Certificate{URIs: []*url.URL{u("sluice://node/a"), u("sluice://node/b")}}, "more than one"},
		{"bad id", &x509.Certificate{URIs: []*url.URL{u("sluice://node/a/b")}}, "is not a node id"},
	} {
		if id, err := NodeID(tc.cert); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NodeID = %q, %v; want an error saying %q", tc.name, id, err, tc.want)
		}
	}
}

func TestInitCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	paths, err := InitCA(dir, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if strings.HasSuffix(p, ".key") {
			want = 0o600
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
	}
	if _, err := InitCA(dir, nil, time.Hour); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second InitCA: %v, want a refusal", err)
	}
	ca, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv, _, err := LoadCert(filepath.Join(dir, "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, h := range DefaultHosts {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: h}); err != nil {
			t.Errorf("server certificate for %s: %v", h, err)
		}
	}
	if _, err := NodeID(srv); err == nil {
		t.Error("the server certificate passes for a node's")
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")); err != nil {
		t.Error(err)
	}
	os.Chmod(filepath.Join(dir, "ca.key"), 0o640)
	if _, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadCA of a 0640 key: %v", err)
	}
}

// TestServerTLSRefusesClientCertificates: a node's certificate given as
// the control plane's own is refused at start, naming the node, rather
// than served to clients that would all refuse it; init-ca's server
// certificate is taken.
func TestServerTLSRefusesClientCertificates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := InitCA(dir, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	if _, err := ServerTLS(p("server.crt"), p("server.key"), p("ca.crt")); err != nil {
		t.Fatalf("init-ca's server certificate: %v", err)
	}
	ca, err := LoadCA(p("ca.crt"), p("ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, keyPEM, _ := NewKey()
	csr, _ := NodeCSR("edge-1", key)
	nodePEM, _, err := ca.IssueNode("edge-1", csr, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	WriteFile(p("edge-1.crt"), nodePEM, 0o644)
	WriteFile(p("edge-1.key"), keyPEM, 0o600)
	_, err = ServerTLS(p("edge-1.crt"), p("edge-1.key"), p("ca.crt"))
	if err == nil || !strings.Contains(err.Error(), "is node edge-1's, for client authentication only") {
		t.Errorf("ServerTLS with a node certificate: %v, want a refusal naming node edge-1", err)
	}
}
