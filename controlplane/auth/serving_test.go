package auth_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/controlplane/auth"
	"github.com/sluice-lb/sluice/internal/pki"
)

// servingGuard is a Guard serving dir's server.crt and server.key, with
// ca to renew them and cfg's other settings.
func servingGuard(t *testing.T, dir string, ca *pki.CA, edit func(*auth.Config)) *auth.Guard {
	t.Helper()
	p := func(n string) string { return filepath.Join(dir, n) }
	tlsCfg, err := pki.ServerTLS(p("server.crt"), p("server.key"), p("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.Config{TLS: tlsCfg, CA: ca, CertFile: p("server.crt"), KeyFile: p("server.key")}
	if edit != nil {
		edit(&cfg)
	}
	return auth.New(cfg)
}

func initCA(t *testing.T, serverValid time.Duration) (string, *pki.CA) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := pki.InitCA(dir, []string{"cp.example", "10.0.0.5"}, serverValid); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, ca
}

// TestRenewServing: the control plane renews the certificate it serves
// once two thirds of its life has passed, for the same names and as long
// again, over its files, and serves the new one; not before, not with
// renewal off, and not one another CA signed.
func TestRenewServing(t *testing.T) {
	dir, ca := initCA(t, time.Hour)
	g := servingGuard(t, dir, ca, nil)
	first := g.ServingCertificate()
	if !g.RenewsServing() {
		t.Fatal("RenewsServing is false for a certificate of its own CA")
	}
	if na, err := g.RenewServing(time.Now().Add(39 * time.Minute)); !na.IsZero() || err != nil {
		t.Errorf("RenewServing 39 minutes into an hour = %v, %v; want nothing due", na, err)
	}
	if g.ServingCertificate().SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("the certificate changed before it was due")
	}
	na, err := g.RenewServing(time.Now().Add(41 * time.Minute))
	if err != nil || na.IsZero() {
		t.Fatalf("RenewServing 41 minutes into an hour = %v, %v; want a renewal", na, err)
	}
	got := g.ServingCertificate()
	if got.SerialNumber.Cmp(first.SerialNumber) == 0 || !got.NotAfter.Equal(na) {
		t.Errorf("after the renewal the guard serves serial %v until %v; want a new one until %v", got.SerialNumber, got.NotAfter, na)
	}
	if names := pki.ServerNames(got); !slices.Equal(names, []string{"cp.example", "10.0.0.5"}) {
		t.Errorf("the renewed certificate names %v, want cp.example and 10.0.0.5 as the first", names)
	}
	if d := pki.Validity(got); d < time.Hour-time.Second || d > time.Hour+time.Second {
		t.Errorf("the renewed certificate is good for %v, want an hour", d)
	}
	if fi, err := os.Stat(filepath.Join(dir, "server.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server.key after the renewal: %v, want mode 0600", err)
	}

	// Renewal off, and a certificate of another CA: left alone.
	off := servingGuard(t, dir, ca, func(c *auth.Config) { c.NoServerRenewal = true })
	otherDir, _ := initCA(t, time.Hour)
	foreign := servingGuard(t, otherDir, ca, nil)
	for name, g := range map[string]*auth.Guard{"renewal off": off, "another CA's certificate": foreign} {
		before := g.ServingCertificate()
		if na, err := g.RenewServing(time.Now().Add(2 * time.Hour)); !na.IsZero() || err != nil || g.RenewsServing() {
			t.Errorf("%s: RenewServing = %v, %v, RenewsServing %v; want nothing", name, na, err, g.RenewsServing())
		}
		if g.ServingCertificate().SerialNumber.Cmp(before.SerialNumber) != 0 {
			t.Errorf("%s: the certificate changed", name)
		}
	}
}

// TestRenewServingCAEnds: a certificate that ends with the CA cannot be
// renewed to outlive it, and the control plane says so.
func TestRenewServingCAEnds(t *testing.T) {
	ca, _, err := pki.NewCA("short CA", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	if err := os.WriteFile(p("ca.crt"), ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.WriteServer(p("server.crt"), p("server.key"), []string{"localhost"}, 5*time.Hour); err != nil {
		t.Fatal(err)
	}
	g := servingGuard(t, dir, ca, nil)
	_, err = g.RenewServing(time.Now().Add(90 * time.Minute))
	want := "the CA expires at " + ca.Cert.NotAfter.UTC().Format(time.RFC3339) + ", when this certificate does"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("RenewServing = %v, want %q", err, want)
	}
}
