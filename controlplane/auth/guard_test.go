package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-lb/sluice/controlplane"
	"github.com/sluice-lb/sluice/controlplane/auth"
	"github.com/sluice-lb/sluice/internal/pki"
	"github.com/sluice-lb/sluice/internal/syncbuf"
	"github.com/sluice-lb/sluice/internal/testcert"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

const testTimeout = 15 * time.Second

// fixture is a control plane in the test process with TLS, tokens, a CA
// to issue node certificates and an audit log, on a loopback port.
type fixture struct {
	addr, dir string
	ca        *pki.CA
	key       *auth.Key
	audit     *syncbuf.Buffer
	log       *syncbuf.Buffer
	now       time.Time
}

func setup(t *testing.T) *fixture {
	t.Helper()
	return setupWith(t, nil)
}

// setupWith is setup with the Guard's Config changed by edit first.
func setupWith(t *testing.T, edit func(*auth.Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	if _, err := pki.InitCA(filepath.Join(dir, "pki"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	p := func(n string) string { return filepath.Join(dir, "pki", n) }
	ca, err := pki.LoadCA(p("ca.crt"), p("ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := pki.ServerTLS(p("server.crt"), p("server.key"), p("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := auth.LoadOrCreateKey(p("token.key"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, ca: ca, key: key, audit: &syncbuf.Buffer{}, log: &syncbuf.Buffer{}, now: time.Now()}
	log := slog.New(slog.NewTextHandler(f.log, nil))
	cfg := auth.Config{TLS: tlsCfg, TokenKey: key, CA: ca, Audit: auth.NewAudit(f.audit, log), Logger: log}
	if edit != nil {
		edit(&cfg)
	}
	guard := auth.New(cfg)
	srv, err := controlplane.New(controlplane.Options{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), Security: guard, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	f.addr = srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
		if t.Failed() {
			t.Logf("control plane log:\n%s", f.log.String())
		}
	})
	return f
}

func (f *fixture) token(t *testing.T, name string, role sluicev1.Role) string {
	t.Helper()
	tok, _, err := f.key.Mint(name, role, f.now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// nodeCert issues node id's certificate from ca and returns its files.
func (f *fixture) nodeCert(t *testing.T, ca *pki.CA, id string) (certFile, keyFile string) {
	t.Helper()
	return issueTo(t, ca, id, time.Hour)
}

// nodeCertFor issues node id's certificate from the fixture's CA, good
// for valid (or until the CA ends), and returns its files.
func (f *fixture) nodeCertFor(t *testing.T, id string, valid time.Duration) (certFile, keyFile string) {
	t.Helper()
	return issueTo(t, f.ca, id, valid)
}

func issueTo(t *testing.T, ca *pki.CA, id string, valid time.Duration) (certFile, keyFile string) {
	t.Helper()
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NodeCSR(id, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := ca.IssueNode(id, csr, valid, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(t.TempDir(), id+".crt"), filepath.Join(t.TempDir(), id+".key")
	os.WriteFile(certFile, cert, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	return certFile, keyFile
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// dial connects over TLS verified with the fixture's CA, with token and a
// client certificate when given.
func (f *fixture) dial(t *testing.T, token, certFile, keyFile string) *grpc.ClientConn {
	t.Helper()
	cfg, err := pki.ClientTLS(filepath.Join(f.dir, "pki", "ca.crt"), certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	conn, err := grpc.NewClient(f.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (f *fixture) config(t *testing.T, token string) sluicev1.ConfigServiceClient {
	return sluicev1.NewConfigServiceClient(f.dial(t, token, "", ""))
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return c
}

// wantStatus fails unless err has code and a message containing text.
func wantStatus(t *testing.T, what string, err error, code codes.Code, text string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != code || !strings.Contains(st.Message(), text) {
		t.Errorf("%s: %v, want %v containing %q", what, err, code, text)
	}
}

// auditLines returns the audit log's entries.
func (f *fixture) auditLines(t *testing.T) []auth.Entry {
	t.Helper()
	var out []auth.Entry
	for line := range strings.SplitSeq(strings.TrimSpace(f.audit.String()), "\n") {
		if line == "" {
			continue
		}
		var e auth.Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

func snap(t *testing.T, withKey bool) *sluicev1.Snapshot {
	t.Helper()
	y := `clusters:
  - name: web
    endpoints:
      - { name: a, address: 127.0.0.1:9001 }
listeners:
  - name: public
    address: 127.0.0.1:8080
    protocol: HTTP
    default_cluster: web
`
	if withKey {
		cert, key := testcert.SelfSigned(t, "www.example")
		indent := func(s string) string {
			return "            " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n            ")
		}
		y += fmt.Sprintf("    tls:\n      certificates:\n        - cert_pem: |\n%s\n          key_pem: |\n%s\n", indent(cert), indent(key))
	}
	s, err := snapshot.Parse([]byte(y), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestViewerChangesNothing: a viewer reads, and every call that would
// change something (or show secrets) is refused, audited, and leaves
// history as it was.
func TestViewerChangesNothing(t *testing.T) {
	f := setup(t)
	ops := f.config(t, f.token(t, "ops", sluicev1.Role_ROLE_OPERATOR))
	if _, err := ops.Apply(ctx(t), &sluicev1.ApplyRequest{Snapshot: snap(t, false)}); err != nil {
		t.Fatalf("operator's apply: %v", err)
	}
	conn := f.dial(t, f.token(t, "watcher", sluicev1.Role_ROLE_VIEWER), "", "")
	viewer, authsvc := sluicev1.NewConfigServiceClient(conn), sluicev1.NewAuthServiceClient(conn)

	calls := map[string]func() error{
		"Apply": func() error {
			_, err := viewer.Apply(ctx(t), &sluicev1.ApplyRequest{Snapshot: snap(t, false), Comment: "x"})
			return err
		},
		"UpdateEndpoint": func() error {
			_, err := viewer.UpdateEndpoint(ctx(t), &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "a", State: sluicev1.AdminState_ADMIN_STATE_DRAINING})
			return err
		},
		"Rollback": func() error {
			_, err := viewer.Rollback(ctx(t), &sluicev1.RollbackRequest{Version: 1})
			return err
		},
		"ShutdownSessions": func() error {
			_, err := viewer.ShutdownSessions(ctx(t), &sluicev1.ShutdownSessionsRequest{Cluster: "web", Endpoint: "a"})
			return err
		},
		"CreateToken": func() error {
			_, err := authsvc.CreateToken(ctx(t), &sluicev1.CreateTokenRequest{Name: "me2", Role: sluicev1.Role_ROLE_ADMIN, Ttl: durationpb.New(time.Hour)})
			return err
		},
		"IssueCert": func() error {
			_, err := authsvc.IssueCert(ctx(t), &sluicev1.IssueCertRequest{NodeId: "n1", CsrPem: "x", Valid: durationpb.New(time.Hour)})
			return err
		},
	}
	for name, call := range calls {
		wantStatus(t, "viewer's "+name, call(), codes.PermissionDenied, `token "watcher" has role viewer; `+name+" needs role")
	}
	_, err := viewer.Get(ctx(t), &sluicev1.GetRequest{ShowSecrets: true})
	wantStatus(t, "viewer's get --show-secrets", err, codes.PermissionDenied, `show_secrets needs the admin role; token "watcher" has role viewer`)

	// Reads work, and nothing changed: one version, by ops.
	h, err := viewer.History(ctx(t), &sluicev1.HistoryRequest{})
	if err != nil {
		t.Fatalf("viewer's history: %v", err)
	}
	if len(h.GetVersions()) != 1 || h.GetVersions()[0].GetAuthor() != "ops" {
		t.Errorf("history %v, want only version 1 by ops", h.GetVersions())
	}
	got, err := viewer.Get(ctx(t), &sluicev1.GetRequest{})
	if err != nil || got.GetSnapshot().GetClusters()[0].GetEndpoints()[0].GetState() == sluicev1.AdminState_ADMIN_STATE_DRAINING {
		t.Errorf("viewer's get: %v, %v", got, err)
	}
	if _, err := viewer.ListNodes(ctx(t), &sluicev1.ListNodesRequest{}); err != nil {
		t.Errorf("viewer's nodes: %v", err)
	}
	if _, err := viewer.GetStats(ctx(t), &sluicev1.GetStatsRequest{}); err != nil {
		t.Errorf("viewer's stats: %v", err)
	}

	// The audit log has the operator's apply and each refusal.
	refused := map[string]bool{}
	for _, e := range f.auditLines(t) {
		if e.Identity == "watcher" && e.Outcome == "PermissionDenied" && e.Role == "viewer" {
			refused[e.Method[strings.LastIndex(e.Method, "/")+1:]] = true
		}
	}
	for name := range calls {
		if !refused[name] {
			t.Errorf("no audit line for the viewer's refused %s:\n%s", name, f.audit.String())
		}
	}
	if !refused["Get"] {
		t.Errorf("no audit line for the viewer's get --show-secrets")
	}
}

// TestOperatorAndSecrets: the operator changes the fleet and history
// names the token, not what the client claimed; secrets are for admins.
func TestOperatorAndSecrets(t *testing.T) {
	f := setup(t)
	ops := f.config(t, f.token(t, "ops", sluicev1.Role_ROLE_OPERATOR))
	resp, err := ops.Apply(ctx(t), &sluicev1.ApplyRequest{Snapshot: snap(t, true), Author: "mallory"})
	if err != nil {
		t.Fatalf("operator's apply: %v", err)
	}
	if _, err := ops.UpdateEndpoint(ctx(t), &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "a", Weight: new(uint32(3))}); err != nil {
		t.Fatalf("operator's set-weight: %v", err)
	}
	h, err := ops.History(ctx(t), &sluicev1.HistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range h.GetVersions() {
		if v.GetAuthor() != "ops" {
			t.Errorf("version %d author %q, want the token's name ops", v.GetVersion(), v.GetAuthor())
		}
	}

	_, err = ops.Get(ctx(t), &sluicev1.GetRequest{ShowSecrets: true})
	wantStatus(t, "operator's get --show-secrets", err, codes.PermissionDenied, `show_secrets needs the admin role; token "ops" has role operator`)
	red, err := ops.Get(ctx(t), &sluicev1.GetRequest{Version: resp.GetVersion()})
	if err != nil {
		t.Fatal(err)
	}
	if k := red.GetSnapshot().GetListeners()[0].GetTls().GetCertificates()[0].GetKeyPem(); k != snapshot.Redacted {
		t.Errorf("operator's get shows key_pem %.30q, want %q", k, snapshot.Redacted)
	}
	admin := f.config(t, f.token(t, "root", sluicev1.Role_ROLE_ADMIN))
	full, err := admin.Get(ctx(t), &sluicev1.GetRequest{ShowSecrets: true})
	if err != nil {
		t.Fatalf("admin's get --show-secrets: %v", err)
	}
	if k := full.GetSnapshot().GetListeners()[0].GetTls().GetCertificates()[0].GetKeyPem(); !strings.Contains(k, "PRIVATE KEY") {
		t.Errorf("admin's get --show-secrets key_pem %.40q, want the key", k)
	}

	var apply, secrets bool
	for _, e := range f.auditLines(t) {
		switch {
		case e.Method == sluicev1.ConfigService_Apply_FullMethodName && e.Identity == "ops" && e.Outcome == "ok" &&
			e.Version == resp.GetVersion() && e.ClaimedAuthor == "mallory" && strings.HasPrefix(e.Peer, "127.0.0.1:"):
			apply = true
		case e.Method == sluicev1.ConfigService_Get_FullMethodName && e.Identity == "root" && e.Outcome == "ok" && e.Target == "current version with secrets":
			secrets = true
		}
	}
	if !apply || !secrets {
		t.Errorf("audit log lacks the apply (%v) or the admin's read of secrets (%v):\n%s", apply, secrets, f.audit.String())
	}
}

// TestTokensRefused: no token, a malformed, an unknown and an expired one
// are each refused with why, logged, and change nothing.
func TestTokensRefused(t *testing.T) {
	f := setup(t)
	otherKey, err := auth.NewKey(bytes.Repeat([]byte{7}, auth.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	unknown, _, _ := otherKey.Mint("ops", sluicev1.Role_ROLE_ADMIN, time.Now(), time.Hour)
	expired, c, _ := f.key.Mint("old", sluicev1.Role_ROLE_ADMIN, time.Now().Add(-2*time.Hour), time.Hour)
	for _, tc := range []struct{ name, token, text string }{
		{"none", "", "no token"},
		{"malformed", "hunter2", "malformed token: not a Sluice token"},
		{"unknown", unknown, "unknown token: its signature does not verify"},
		{"expired", expired, fmt.Sprintf(`token "old" expired at %s`, c.ExpiresAt().Format(time.RFC3339))},
	} {
		api := f.config(t, tc.token)
		_, err := api.Apply(ctx(t), &sluicev1.ApplyRequest{Snapshot: snap(t, false)})
		wantStatus(t, tc.name+" token's apply", err, codes.Unauthenticated, tc.text)
		_, err = api.ListNodes(ctx(t), &sluicev1.ListNodesRequest{})
		wantStatus(t, tc.name+" token's nodes", err, codes.Unauthenticated, tc.text)
	}
	h, err := f.config(t, f.token(t, "v", sluicev1.Role_ROLE_VIEWER)).History(ctx(t), &sluicev1.HistoryRequest{})
	if err != nil || len(h.GetVersions()) != 0 {
		t.Errorf("history after refused applies: %v, %v; want none", h.GetVersions(), err)
	}
	if !strings.Contains(f.log.String(), `msg="call refused"`) || !strings.Contains(f.log.String(), "expired at") {
		t.Errorf("the control plane did not log the refusals:\n%s", f.log.String())
	}
	lines := f.auditLines(t)
	if len(lines) != 4 {
		t.Fatalf("%d audit lines, want one per refused apply:\n%s", len(lines), f.audit.String())
	}
	if e := lines[3]; e.Identity != "old" || e.Outcome != "Unauthenticated" || !strings.Contains(e.Error, "expired at") {
		t.Errorf("audit of the expired token's apply: %+v", e)
	}
	if e := lines[0]; e.Identity != "anonymous" || e.Outcome != "Unauthenticated" {
		t.Errorf("audit of the apply without token: %+v", e)
	}
}

// TestNodeIdentity: a node's id is its certificate's.
func TestNodeIdentity(t *testing.T) {
	f := setup(t)
	admin := f.config(t, f.token(t, "root", sluicev1.Role_ROLE_ADMIN))
	if _, err := admin.Apply(ctx(t), &sluicev1.ApplyRequest{Snapshot: snap(t, false)}); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := f.nodeCert(t, f.ca, "edge-1")
	node := f.dial(t, "", certFile, keyFile)

	subscribe := func(conn *grpc.ClientConn, id string) error {
		st, err := sluicev1.NewDiscoveryServiceClient(conn).StreamSnapshots(ctx(t))
		if err != nil {
			return err
		}
		// A stream the server refused before this message went out fails
		// Send with io.EOF; its status comes from Recv either way.
		if err := st.Send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: id}}); err != nil && err != io.EOF {
			return err
		}
		resp, err := st.Recv()
		if err == nil && resp.GetVersionInfo() != "1" {
			return fmt.Errorf("got version %q, want 1", resp.GetVersionInfo())
		}
		return err
	}
	if err := subscribe(node, "edge-1"); err != nil {
		t.Fatalf("edge-1 with its own certificate: %v", err)
	}
	wantStatus(t, "edge-1's certificate claiming edge-2", subscribe(node, "edge-2"),
		codes.PermissionDenied, "node id edge-2 does not match its certificate (edge-1)")
	if !strings.Contains(f.log.String(), "node refused: its claimed id does not match its certificate") {
		t.Errorf("no log line for the mismatch:\n%s", f.log.String())
	}

	rep, err := sluicev1.NewStatsServiceClient(node).Report(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	rep.Send(&sluicev1.StatsReport{NodeId: "edge-2"})
	_, err = rep.CloseAndRecv()
	wantStatus(t, "stats as edge-2", err, codes.PermissionDenied, "node id edge-2 does not match its certificate (edge-1)")

	cmd, err := sluicev1.NewCommandServiceClient(node).Commands(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Send(&sluicev1.CommandReply{NodeId: "edge-2"})
	_, err = cmd.Recv()
	wantStatus(t, "commands as edge-2", err, codes.PermissionDenied, "node id edge-2 does not match its certificate (edge-1)")

	// No client certificate: no node stream.
	wantStatus(t, "a node without a certificate", subscribe(f.dial(t, "", "", ""), "edge-1"),
		codes.Unauthenticated, "needs a node certificate signed by the control plane's CA")

	// A node certificate is no operator credential, even with a token.
	_, err = sluicev1.NewConfigServiceClient(f.dial(t, f.token(t, "root2", sluicev1.Role_ROLE_ADMIN), certFile, keyFile)).
		Apply(ctx(t), &sluicev1.ApplyRequest{Snapshot: snap(t, false)})
	wantStatus(t, "apply with a node certificate", err, codes.PermissionDenied, "a node certificate (node edge-1) cannot call the operator API")
	_, err = sluicev1.NewConfigServiceClient(node).ListNodes(ctx(t), &sluicev1.ListNodesRequest{})
	wantStatus(t, "nodes with a node certificate", err, codes.PermissionDenied, "cannot call the operator API")

	// A certificate of another CA fails the handshake, logged as such.
	other, _, err := pki.NewCA("Other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	oc, ok := f.nodeCert(t, other, "edge-1")
	err = subscribe(f.dial(t, "", oc, ok), "edge-1")
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a certificate of another CA: %v, want the handshake to fail (Unavailable)", err)
	}
	// The server finishes its side of the handshake, and logs, a moment
	// after the client has given up.
	const line = "TLS handshake refused: client certificate not signed by the control plane's CA"
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(f.log.String(), line); {
		if time.Now().After(deadline) {
			t.Errorf("no log line for the other CA's certificate:\n%s", f.log.String())
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIssueCertAndCreateToken: what an admin makes works.
func TestIssueCertAndCreateToken(t *testing.T) {
	f := setup(t)
	root := f.token(t, "root", sluicev1.Role_ROLE_ADMIN)
	authsvc := sluicev1.NewAuthServiceClient(f.dial(t, root, "", ""))
	resp, err := authsvc.CreateToken(ctx(t), &sluicev1.CreateTokenRequest{Name: "ci", Role: sluicev1.Role_ROLE_VIEWER, Ttl: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	who, err := sluicev1.NewAuthServiceClient(f.dial(t, resp.GetToken(), "", "")).WhoAmI(ctx(t), &sluicev1.WhoAmIRequest{})
	if err != nil || who.GetName() != "ci" || who.GetRole() != sluicev1.Role_ROLE_VIEWER || !who.GetAuthEnabled() {
		t.Errorf("whoami with the new token: %v, %v", who, err)
	}
	// The audit line tells which token made which: ids, and the expiry.
	made, _ := f.key.Verify(resp.GetToken(), time.Now())
	by, _ := f.key.Verify(root, time.Now())
	var audited bool
	for _, e := range f.auditLines(t) {
		if strings.HasSuffix(e.Method, "/CreateToken") && e.Outcome == "ok" {
			audited = true
			if e.NewTokenID != made.ID || made.ID == "" || !e.NewTokenExpires.Equal(resp.GetExpires().AsTime()) || e.TokenID != by.ID || by.ID == "" {
				t.Errorf("audit of token create: %+v; want new_token_id %s expiring %v, made by token_id %s", e, made.ID, resp.GetExpires().AsTime(), by.ID)
			}
		}
	}
	if !audited {
		t.Errorf("no audit line for the token create:\n%s", f.audit.String())
	}

	key, _, _ := pki.NewKey()
	csr, _ := pki.NodeCSR("edge-9", key)
	cert, err := authsvc.IssueCert(ctx(t), &sluicev1.IssueCertRequest{NodeId: "edge-9", CsrPem: string(csr), Valid: durationpb.New(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if na := cert.GetNotAfter().AsTime(); na.Sub(time.Now()) < 23*time.Hour || na.Sub(time.Now()) > 25*time.Hour {
		t.Errorf("certificate valid until %v, want in 24h", na)
	}
	if cert.GetCaPem() != string(f.ca.PEM) {
		t.Errorf("CA PEM %q, want the control plane's CA", cert.GetCaPem())
	}
	_, err = authsvc.IssueCert(ctx(t), &sluicev1.IssueCertRequest{NodeId: "edge-9", CsrPem: "garbage", Valid: durationpb.New(time.Hour)})
	wantStatus(t, "a CSR that is not PEM", err, codes.InvalidArgument, "not a PEM CERTIFICATE REQUEST")
	_, err = authsvc.IssueCert(ctx(t), &sluicev1.IssueCertRequest{NodeId: "bad id", CsrPem: string(csr), Valid: durationpb.New(time.Hour)})
	wantStatus(t, "a bad node id", err, codes.InvalidArgument, `"bad id" is not a valid node id: use letters, digits, '.', '_', ':' and '-', starting with a letter or digit, at most 128 characters`)
	if strings.Contains(status.Convert(err).Message(), "regex") {
		t.Errorf("a bad node id: %v; want no regular expression", err)
	}
	_, err = authsvc.CreateToken(ctx(t), &sluicev1.CreateTokenRequest{Name: "bad name!", Role: sluicev1.Role_ROLE_VIEWER, Ttl: durationpb.New(time.Hour)})
	wantStatus(t, "a bad token name", err, codes.InvalidArgument, `"bad name!" is not a valid token name: use letters, digits, '.', '_', '@' and '-', starting with a letter or digit, at most 64 characters, and not "anonymous"`)
	if strings.Contains(status.Convert(err).Message(), "regex") {
		t.Errorf("a bad token name: %v; want no regular expression", err)
	}
}
