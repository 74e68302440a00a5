package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/internal/pki"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestTLSFlagErrors: bad --ca, --cert or --key say which flags and which
// file, before any call, with status 2.
func TestTLSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.InitCA(dir, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	for _, tc := range []struct {
		flags  []string
		stderr string
	}{
		{[]string{"--ca", "/nonexistent/ca.crt"},
			"sluicectl: --ca/--cert/--key: CA certificate: open /nonexistent/ca.crt: no such file or directory\n"},
		{[]string{"--ca", p("ca.crt"), "--cert", p("server.crt")},
			"sluicectl: --ca/--cert/--key: a client certificate needs both its certificate and its key file\n"},
		{[]string{"--ca", p("ca.crt"), "--cert", p("server.crt"), "--key", p("ca.key")},
			"sluicectl: --ca/--cert/--key: client certificate " + p("server.crt") + ", key " + p("ca.key") + ": tls: private key does not match public key\n"},
	} {
		code, stdout, stderr := sluicectl(t, "127.0.0.1:1", append(tc.flags, "history")...)
		if code != 2 || stdout != "" || stderr != tc.stderr {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want 2, nothing, %q", tc.flags, code, stdout, stderr, tc.stderr)
		}
	}
}

// TestCertIssueBadNode: a node id that cannot be is refused before a key is
// made or the control plane asked, saying what a node id is.
func TestCertIssueBadNode(t *testing.T) {
	out := filepath.Join(t.TempDir(), "certs")
	code, stdout, stderr := sluicectl(t, "127.0.0.1:1", "cert", "issue", "--node", "bad id!", "--out", out)
	want := `sluicectl cert issue: --node "bad id!" is not a valid node id: use letters, digits, '.', '_', ':' and '-', starting with a letter or digit, at most 128 characters
Usage: sluicectl cert issue --node ID [--out DIR] [--valid D]
Run 'sluicectl cert issue --help' for more.
`
	if code != 2 || stdout != "" || stderr != want {
		t.Errorf("cert issue --node 'bad id!': status %d, stdout %q, stderr %q; want 2, nothing,\n%s", code, stdout, stderr, want)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("--out %s: %v; want nothing written", out, err)
	}
}

// TestTokenCreateMissingFlags: token create says which of --name and
// --role is missing, before the control plane is asked.
func TestTokenCreateMissingFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--name and --role are required"},
		{[]string{"--name", "bob"}, "--role is required: viewer, operator or admin"},
		{[]string{"--role", "viewer"}, "--name is required: who or what the token is for"},
	} {
		code, stdout, stderr := sluicectl(t, "127.0.0.1:1", append([]string{"token", "create"}, tc.args...)...)
		if want := "sluicectl token create: " + tc.want + "\n"; code != 2 || stdout != "" || !strings.HasPrefix(stderr, want) {
			t.Errorf("token create %q: status %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, stdout, stderr, want)
		}
	}
}

// TestReplicaListOverTLS: with --cp naming several replicas, each one's
// certificate is checked against the host it is dialled at, as when it is
// named alone: the first refuses connections, the second answers.
func TestReplicaListOverTLS(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.InitCA(dir, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	cfg, err := pki.ServerTLS(p("server.crt"), p("server.key"), p("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	sluicev1.RegisterConfigServiceServer(srv, &fakeCP{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	down := loopback.FreeAddr(t)

	for _, cp := range []string{lis.Addr().String(), down + "," + lis.Addr().String()} {
		code, stdout, stderr := sluicectl(t, cp, "--ca", p("ca.crt"), "history")
		if code != 0 || !strings.Contains(stdout, "VERSION") {
			t.Errorf("--cp %s: status %d, stdout %q, stderr %q; want the history", cp, code, stdout, stderr)
		}
	}
}
