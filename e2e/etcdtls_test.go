package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/internal/etcdtest"
	"github.com/sluice-lb/sluice/internal/testcert"
)

// TestHAEtcdTLS: replicas reach an etcd that serves TLS only and asks
// every client for a certificate (etcd --client-cert-auth) with --etcd
// https://…, --etcd-ca, --etcd-cert and --etcd-key: a version applied
// through one reaches a node on the other. A replica that gets its TLS
// wrong exits at start and says what is wrong, rather than that etcd did
// not answer.
func TestHAEtcdTLS(t *testing.T) {
	binaries(t)
	dir := t.TempDir()
	write := func(name, pem string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(pem), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ca, other := testcert.NewCA(t), testcert.NewCA(t)
	caFile := write("ca.pem", ca.PEM)
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	serverCert, serverKey := ca.Sign(t, both, "127.0.0.1")
	replicaCert, replicaKey := ca.Sign(t, client, "sluice-cp")
	strangerCert, strangerKey := other.Sign(t, client, "stranger")
	etcd := etcdtest.StartTLS(t, etcdtest.TLS{
		CertFile: write("etcd.pem", serverCert), KeyFile: write("etcd-key.pem", serverKey), CAFile: caFile,
	})
	creds := []string{"--etcd-ca", caFile, "--etcd-cert", write("cp.pem", replicaCert), "--etcd-key", write("cp-key.pem", replicaKey)}

	rs := startReplicas(t, etcd, 2, creds...)
	n := startHANode(t, "node-1", rs[1])
	v := applyVia(t, rs[0], clusterOnly(1))
	waitFor(t, "node-1 on the other replica to apply version "+fmt.Sprint(v), func() bool { return n.version() == fmt.Sprint(v) })

	host := strings.TrimPrefix(etcd.Endpoint, "https://")
	stranger := []string{"--etcd-ca", caFile, "--etcd-cert", write("stranger.pem", strangerCert), "--etcd-key", write("stranger-key.pem", strangerKey)}
	for _, tt := range []struct {
		name  string
		flags []string
		says  string
	}{
		{"plain endpoint", []string{"--etcd", "http://" + host},
			"(http://" + host + ": it speaks TLS: give https://" + host + ", and --etcd-ca with the authority that signed its certificate)"},
		{"no --etcd-ca", append([]string{"--etcd", etcd.Endpoint}, creds[2:]...),
			"(" + etcd.Endpoint + ": TLS: tls: failed to verify certificate: x509: certificate signed by unknown authority)"},
		{"no client certificate", []string{"--etcd", etcd.Endpoint, "--etcd-ca", caFile},
			"(" + etcd.Endpoint + ": TLS: remote error: tls: certificate required)"},
		{"certificate of another authority", append([]string{"--etcd", etcd.Endpoint}, stranger...),
			"(" + etcd.Endpoint + ": TLS: remote error: tls: unknown certificate authority)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each waits for etcd as long as the store does (5 s)
			refusedAtStart(t, append([]string{"--etcd-prefix", haPrefix(t)}, tt.flags...), "did not answer within 5s", tt.says)
		})
	}
}

// refusedAtStart runs sluice-cp with flags (and a free --listen, no
// --http) and wants it to exit 1, saying it cannot start and each of says.
func refusedAtStart(t *testing.T, flags []string, says ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	args := append([]string{"--listen", freeAddr(t), "--http", ""}, flags...)
	out, err := exec.CommandContext(ctx, filepath.Join(binaries(t), "sluice-cp"), args...).CombinedOutput()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Errorf("sluice-cp %s: %v, want exit status 1\n%s", strings.Join(args, " "), err, out)
	}
	for _, want := range append([]string{"cannot start"}, says...) {
		if !strings.Contains(string(out), want) {
			t.Errorf("sluice-cp %s says\n%s\nwant %q", strings.Join(args, " "), out, want)
		}
	}
}
