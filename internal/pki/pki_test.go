package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"slices"
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
		{"bad id", &x509.Certificate{URIs: []*url.URL{u("sluice://node/a/b")}}, `node certificate: "a/b" is not a valid node id: use letters, digits, '.', '_', ':' and '-', starting with a letter or digit, at most 128 characters`},
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

// TestRenewedServerCertificateServes: RenewServer writes a new pair over
// init-ca's, for the names of the one it replaces or those given, and a
// ServerTLS configuration made before serves it from its next handshake;
// a torn pair (the key written, not the certificate) leaves the last good
// one serving.
func TestRenewedServerCertificateServes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := InitCA(dir, []string{"cp.example.com", "10.0.0.5"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	cfg, err := ServerTLS(p("server.crt"), p("server.key"), p("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	first := ServingCertificate(cfg.Clone())
	if first == nil || first.NotAfter.Sub(time.Now()) > time.Hour {
		t.Fatalf("serving %v, want init-ca's, good for an hour", first)
	}
	_, keyPEM, _ := NewKey()
	WriteFile(p("server.key"), keyPEM, 0o600) // torn: the certificate is not this key's
	if got := ServingCertificate(cfg); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("with a key that does not match the certificate, serving serial %v; want the last good one, %v", got.SerialNumber, first.SerialNumber)
	}
	paths, names, notAfter, err := RenewServer(dir, nil, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := ServingCertificate(cfg)
	if got.SerialNumber.Cmp(first.SerialNumber) == 0 || !got.NotAfter.Equal(notAfter) ||
		!slices.Equal(names, []string{"cp.example.com", "10.0.0.5"}) || !slices.Equal(paths, []string{p("server.crt"), p("server.key")}) {
		t.Errorf("after RenewServer: serving serial %v until %v, names %v, paths %v; want a new certificate until %v for the old names",
			got.SerialNumber, got.NotAfter, names, paths, notAfter)
	}
	if got.VerifyHostname("cp.example.com") != nil || got.VerifyHostname("10.0.0.5") != nil {
		t.Errorf("the renewed certificate covers %v %v", got.DNSNames, got.IPAddresses)
	}
	if fi, err := os.Stat(p("server.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server.key: %v, %v; want mode 0600", fi.Mode().Perm(), err)
	}
	if _, names, _, err := RenewServer(dir, []string{"cp2.example.com"}, time.Hour); err != nil || ServingCertificate(cfg).VerifyHostname("cp2.example.com") != nil {
		t.Errorf("RenewServer for cp2.example.com: %v, %v", names, err)
	}
}

// TestPoolID: a CA file's id is that of its certificates, whatever else
// the file holds; another CA's differs.
func TestPoolID(t *testing.T) {
	dirs := [2]string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
	for _, d := range dirs {
		if _, err := InitCA(d, nil, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	a, err := PoolID(filepath.Join(dirs[0], "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := os.ReadFile(filepath.Join(dirs[0], "ca.crt"))
	commented := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(commented, append([]byte("# the fleet's CA\n"), pemBytes...), 0o644)
	if got, err := PoolID(commented); err != nil || got != a {
		t.Errorf("the same CA with a comment: %q, %v; want %q", got, err, a)
	}
	if got, _ := PoolID(filepath.Join(dirs[1], "ca.crt")); got == a || len(got) != 12 {
		t.Errorf("another CA: %q; want 12 hex digits other than %q", got, a)
	}
}

// TestErrorsNameTheFile: what reaches a terminal says which file and what
// is wrong with it, without this package's name.
func TestErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	if _, err := InitCA(dir, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("empty.pem"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(p("ca.crt"), p("ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, _, _ := NewKey()
	csr, _ := NodeCSR("edge-1", key)
	errText := func(err error) string {
		if err == nil {
			return "<nil>"
		}
		return err.Error()
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"LoadCA, no certificate", func() error { _, err := LoadCA(p("nope.crt"), p("ca.key")); return err }(),
			"CA certificate: open " + p("nope.crt") + ": no such file or directory"},
		{"LoadCA, no key", func() error { _, err := LoadCA(p("ca.crt"), p("nope.key")); return err }(),
			"CA key: stat " + p("nope.key") + ": no such file or directory"},
		{"LoadCA, not a CA", func() error { _, err := LoadCA(p("server.crt"), p("ca.key")); return err }(),
			p("server.crt") + " is not a CA certificate"},
		{"LoadPool, no PEM", func() error { _, err := LoadPool(p("empty.pem")); return err }(),
			p("empty.pem") + " holds no PEM certificate"},
		{"ServerTLS, no CA", func() error { _, err := ServerTLS(p("server.crt"), p("server.key"), p("nope.crt")); return err }(),
			"CA certificate: open " + p("nope.crt") + ": no such file or directory"},
		{"ServerTLS, not a pair", func() error { _, err := ServerTLS(p("server.crt"), p("ca.key"), p("ca.crt")); return err }(),
			"server certificate " + p("server.crt") + ", key " + p("ca.key") + ": tls: private key does not match public key"},
		{"ClientTLS, no certificate", func() error { _, err := ClientTLS(p("ca.crt"), p("nope.crt"), p("ca.key")); return err }(),
			"client certificate: open " + p("nope.crt") + ": no such file or directory"},
		{"ClientTLS, no key", func() error { _, err := ClientTLS(p("ca.crt"), p("server.crt"), ""); return err }(),
			"a client certificate needs both its certificate and its key file"},
		{"WriteFile, no directory", WriteFile(p("nope/edge-1.key"), []byte("x"), 0o600),
			"write " + p("nope/edge-1.key") + ": no such file or directory"},
		{"IssueNode, bad id", func() error { _, _, err := ca.IssueNode("bad id!", csr, time.Hour, time.Now()); return err }(),
			`"bad id!" is not a valid node id: use letters, digits, '.', '_', ':' and '-', starting with a letter or digit, at most 128 characters`},
		{"IssueNode, no CSR", func() error { _, _, err := ca.IssueNode("edge-1", []byte("hello"), time.Hour, time.Now()); return err }(),
			"the certificate request is not a PEM CERTIFICATE REQUEST"},
		{"CheckNodeID, too long", CheckNodeID(strings.Repeat("a", 129)),
			`"` + strings.Repeat("a", 129) + `" is not a valid node id: use letters, digits, '.', '_', ':' and '-', starting with a letter or digit, at most 128 characters`},
	} {
		if got := errText(tc.err); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
	if err := CheckNodeID(strings.Repeat("a", 128)); err != nil {
		t.Errorf("a node id of 128 characters: %v", err)
	}
}
