package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-lb/sluice/controlplane"
	"github.com/sluice-lb/sluice/controlplane/auth"
	"github.com/sluice-lb/sluice/internal/pki"
	"github.com/sluice-lb/sluice/internal/promtext"
	"github.com/sluice-lb/sluice/internal/testcert"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// run runs one of the binaries to its end with env added, and returns its
// stdout, stderr and exit code.
func runBin(t *testing.T, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), name), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return stdout.String(), stderr.String(), code
}

// TestSecurityEndToEnd follows README "Secure setup" with the real
// binaries: a CA and the first admin token made offline, a control plane
// with TLS, tokens and an audit log, a node certificate issued through
// the API, a node on it; then every refusal issue 7 asks for.
func TestSecurityEndToEnd(t *testing.T) {
	dir := t.TempDir()
	pkiDir, nodeDir := filepath.Join(dir, "pki"), filepath.Join(dir, "node")
	p := func(n string) string { return filepath.Join(pkiDir, n) }

	// Bootstrap, offline.
	out, errOut, code := runBin(t, nil, "sluice-cp", "init-ca", "--dir", pkiDir)
	if code != 0 || !strings.Contains(out, "wrote "+p("ca.key")) {
		t.Fatalf("init-ca: exit %d\n%s%s", code, out, errOut)
	}
	for name, mode := range map[string]os.FileMode{"ca.key": 0o600, "server.key": 0o600, "ca.crt": 0o644, "server.crt": 0o644} {
		if fi, err := os.Stat(p(name)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v (%v), want mode %04o", name, fi.Mode().Perm(), err, mode)
		}
	}
	adminTok, errOut, code := runBin(t, nil, "sluice-cp", "mint-token", "--token-key", p("token.key"), "--name", "admin", "--role", "admin", "--ttl", "1h")
	if code != 0 {
		t.Fatalf("mint-token: exit %d: %s", code, errOut)
	}
	adminTok = strings.TrimSpace(adminTok)
	// A token that expires in a second, to try once it has.
	shortTok, _, _ := runBin(t, nil, "sluice-cp", "mint-token", "--token-key", p("token.key"), "--name", "temp", "--role", "admin", "--ttl", "1s")
	shortTok = strings.TrimSpace(shortTok)

	cpAddr, cpHTTP, listen := freeAddr(t), freeAddr(t), freeAddr(t)
	auditFile := filepath.Join(dir, "audit.log")
	cp := start(t, "sluice-cp", "--listen", cpAddr, "--http", cpHTTP, "--data", filepath.Join(dir, "data"),
		"--tls-cert", p("server.crt"), "--tls-key", p("server.key"), "--ca-cert", p("ca.crt"), "--ca-key", p("ca.key"),
		"--token-key", p("token.key"), "--audit-log", auditFile)
	caPool, err := pki.LoadPool(p("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	https := &http.Client{Timeout: testTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}}}
	waitHealthy(t, https, "https://"+cpHTTP)

	env := func(token string) []string {
		return []string{"SLUICE_CP=" + cpAddr, "SLUICE_CA=" + p("ca.crt"), "SLUICE_TOKEN=" + token}
	}
	ctlAs := func(token string, args ...string) (string, string, int) {
		t.Helper()
		return runBin(t, env(token), "sluicectl", args...)
	}

	// The admin issues the node's certificate and the others' tokens.
	out, errOut, code = ctlAs(adminTok, "cert", "issue", "--node", "edge-1", "--out", nodeDir)
	if code != 0 || !strings.Contains(out, "node edge-1, valid until") {
		t.Fatalf("cert issue: exit %d\n%s%s", code, out, errOut)
	}
	if fi, err := os.Stat(filepath.Join(nodeDir, "edge-1.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("edge-1.key: %v, want mode 0600", err)
	}
	token := func(name, role string) string {
		t.Helper()
		out, errOut, code := ctlAs(adminTok, "token", "create", "--name", name, "--role", role, "--ttl", "1h")
		if code != 0 {
			t.Fatalf("token create %s: exit %d: %s", name, code, errOut)
		}
		return strings.TrimSpace(out)
	}
	opsTok, viewTok := token("ops", "operator"), token("watcher", "viewer")
	if out, _, _ := ctlAs(viewTok, "whoami"); !strings.HasPrefix(out, "watcher, role viewer, expires ") {
		t.Errorf("whoami: %q", out)
	}
	// As a CI secret or $(cat file) often hands it over: with a newline.
	if out, errOut, _ := ctlAs(viewTok+"\n", "whoami"); !strings.HasPrefix(out, "watcher, role viewer, expires ") {
		t.Errorf("whoami with a newline after the token: stdout %q, stderr %q", out, errOut)
	}

	// The node connects over mTLS, as the certificate's id, and applies.
	node := start(t, "sluice-dp", "--cp", cpAddr, "--ca", filepath.Join(nodeDir, "ca.crt"),
		"--cert", filepath.Join(nodeDir, "edge-1.crt"), "--key", filepath.Join(nodeDir, "edge-1.key"), "--admin", "")
	web := startBackend(t, "web1")
	certPEM, keyPEM := testcert.SelfSigned(t, "www.example")
	indent := func(s string) string {
		return "            " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n            ")
	}
	snapFile := writeFile(t, dir, "snap.yaml", fmt.Sprintf(`clusters:
  - name: web
    endpoints:
      - { name: web1, address: %s }
listeners:
  - name: public
    address: %s
    protocol: HTTP
    default_cluster: web
    tls:
      certificates:
        - cert_pem: |
%s
          key_pem: |
%s
`, web.addr, listen, indent(certPEM), indent(keyPEM)))
	out, errOut, code = ctlAs(opsTok, "apply", "-f", snapFile, "--comment", "first")
	if code != 0 || !strings.Contains(out, "version 1") {
		t.Fatalf("operator's apply: exit %d\n%s%s", code, out, errOut)
	}
	insecureTLS := &http.Client{Timeout: testTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	waitFor(t, "the node to serve version 1", func() bool {
		body, err := get(insecureTLS, "https://"+listen+"/")
		return err == nil && body == "web1"
	})
	waitFor(t, "nodes to show edge-1 on version 1", func() bool {
		out, _, _ := ctlAs(viewTok, "nodes")
		return strings.Contains(out, "edge-1") && strings.Contains(out, "connected  1 ")
	})
	if out, _, _ := ctlAs(viewTok, "history"); !strings.Contains(out, " ops ") {
		t.Errorf("history does not name the token ops as author:\n%s", out)
	}

	// A viewer changes nothing, nor previews a change; the refusal names
	// the command, not the control plane's method.
	for _, args := range [][]string{
		{"apply", "-f", snapFile, "--comment", "again"},
		{"diff", "-f", snapFile},
		{"set-weight", "web/web1", "3"},
		{"drain", "web/web1"},
		{"disable", "web/web1"},
		{"rollback", "1"},
		{"shutdown-sessions", "web/web1"},
		{"token", "create", "--name", "me", "--role", "admin"},
		{"cert", "issue", "--node", "edge-2", "--out", filepath.Join(dir, "stolen")},
	} {
		_, errOut, code := ctlAs(viewTok, args...)
		cmd := args[0]
		if cmd == "token" || cmd == "cert" {
			cmd += " " + args[1]
		}
		if want := `token "watcher" has role viewer; ` + cmd + ` needs role `; code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "(PermissionDenied)") {
			t.Errorf("viewer's %s: exit %d, stderr %q; want exit 1, PermissionDenied saying %q", cmd, code, errOut, want)
		}
	}
	// Secrets are the admin's: redacted for others, refused on request.
	_, errOut, code = ctlAs(opsTok, "get", "--show-secrets")
	if code != 1 || !strings.Contains(errOut, `show_secrets needs the admin role; token "ops" has role operator (PermissionDenied)`) {
		t.Errorf("operator's get --show-secrets: exit %d, stderr %q", code, errOut)
	}
	if out, _, _ := ctlAs(opsTok, "get"); strings.Contains(out, "PRIVATE KEY") || !strings.Contains(out, "<redacted>") {
		t.Errorf("operator's get shows the key or no <redacted>:\n%s", out)
	}
	if out, _, code := ctlAs(adminTok, "get", "--show-secrets"); code != 0 || !strings.Contains(out, "PRIVATE KEY") {
		t.Errorf("admin's get --show-secrets: exit %d, no key", code)
	}

	// A node's certificate is no operator credential.
	_, errOut, code = runBin(t, env(""), "sluicectl", "--cert", filepath.Join(nodeDir, "edge-1.crt"), "--key", filepath.Join(nodeDir, "edge-1.key"), "nodes")
	if code != 1 || !strings.Contains(errOut, "a node certificate (node edge-1) cannot call the operator API") || !strings.Contains(errOut, "(PermissionDenied)") {
		t.Errorf("nodes with the node's certificate: exit %d, stderr %q", code, errOut)
	}
	// Unknown and expired tokens.
	_, errOut, code = ctlAs("sluice1.bm90.aGVsbG8", "nodes")
	if code != 1 || !strings.Contains(errOut, "(Unauthenticated)") {
		t.Errorf("a malformed token: exit %d, stderr %q", code, errOut)
	}
	waitFor(t, "the short token to expire", func() bool {
		_, errOut, _ := ctlAs(shortTok, "apply", "-f", snapFile)
		return strings.Contains(errOut, `token "temp" expired at `)
	})
	_, errOut, code = ctlAs(shortTok, "apply", "-f", snapFile)
	if code != 1 || !strings.Contains(errOut, `token "temp" expired at `) || !strings.Contains(errOut, "(Unauthenticated)") {
		t.Errorf("an expired token's apply: exit %d, stderr %q", code, errOut)
	}

	// The dashboard's API: the same tokens, the same roles, over HTTPS.
	api := func(method, path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+cpHTTP+path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := https.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, body := api("GET", "/api/fleet", ""); code != 401 || !strings.Contains(body, "no token") {
		t.Errorf("GET /api/fleet without token: %d %s", code, body)
	}
	if code, body := api("GET", "/api/clusters", viewTok); code != 200 || strings.Contains(body, "PRIVATE KEY") {
		t.Errorf("GET /api/clusters as viewer: %d, or it shows a key: %s", code, body)
	}
	if code, body := api("POST", "/api/clusters/web/endpoints/web1/drain", viewTok); code != 403 || !strings.Contains(body, "UpdateEndpoint needs role operator") {
		t.Errorf("POST drain as viewer: %d %s", code, body)
	}
	if code, body := api("POST", "/api/clusters/web/endpoints/web1/drain", opsTok); code != 200 || !strings.Contains(body, `"version":2`) {
		t.Errorf("POST drain as operator: %d %s", code, body)
	}
	if out, _, _ := ctlAs(viewTok, "history"); strings.Count(out, " ops ") != 2 || strings.Contains(out, "PRIVATE KEY") {
		t.Errorf("history after the dashboard's drain:\n%s", out)
	}

	// A node claiming another id than its certificate's is refused.
	evil := start(t, "sluice-dp", "--cp", cpAddr, "--ca", filepath.Join(nodeDir, "ca.crt"), "--node-id", "evil",
		"--cert", filepath.Join(nodeDir, "edge-1.crt"), "--key", filepath.Join(nodeDir, "edge-1.key"), "--admin", "")
	waitFor(t, "the control plane to refuse the node claiming evil", func() bool {
		return strings.Contains(cp.out.String(), "node refused: its claimed id does not match its certificate") &&
			strings.Contains(evil.out.String(), "PermissionDenied desc = node id evil does not match its certificate (edge-1)")
	})
	// A certificate from another CA fails the handshake.
	other, _, err := pki.NewCA("Other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, keyPEMBytes, _ := pki.NewKey()
	csr, _ := pki.NodeCSR("edge-1", key)
	otherCert, _, err := other.IssueNode("edge-1", csr, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherNode := start(t, "sluice-dp", "--cp", cpAddr, "--ca", p("ca.crt"), "--cert", writeFile(t, dir, "other.crt", string(otherCert)),
		"--key", writeFile(t, dir, "other.key", string(keyPEMBytes)), "--admin", "")
	waitFor(t, "the control plane to log the other CA's certificate, and the node to say what it means", func() bool {
		return strings.Contains(cp.out.String(), "TLS handshake refused: client certificate not signed by the control plane's CA") &&
			strings.Contains(otherNode.out.String(), `hint="the control plane refused the node's certificate (--cert): its CA (--ca-cert) did not sign it`)
	})
	// A node that verifies the control plane with another CA (--ca).
	wrongCA := start(t, "sluice-dp", "--cp", cpAddr, "--ca", writeFile(t, dir, "other-ca.crt", string(other.PEM)),
		"--cert", filepath.Join(nodeDir, "edge-1.crt"), "--key", filepath.Join(nodeDir, "edge-1.key"), "--admin", "")
	waitFor(t, "the node with another CA's --ca to say what it means", func() bool {
		return strings.Contains(wrongCA.out.String(), "x509: certificate signed by unknown authority") &&
			strings.Contains(wrongCA.out.String(), `hint="the control plane's certificate is not signed by the CA of --ca`)
	})
	// An expired certificate of the right CA: the node says so at start,
	// as the handshake only breaks its connection.
	ca, err := pki.LoadCA(p("ca.crt"), p("ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	csr, _ = pki.NodeCSR("edge-3", key)
	oldCert, _, err := ca.IssueNode("edge-3", csr, time.Hour, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expired := start(t, "sluice-dp", "--cp", cpAddr, "--ca", p("ca.crt"), "--cert", writeFile(t, dir, "old.crt", string(oldCert)),
		"--key", writeFile(t, dir, "old.key", string(keyPEMBytes)), "--admin", "")
	// It says so again at each handshake that sends it: of the refusal
	// itself it sees the control plane's alert (remote error: tls:
	// expired certificate, logged with a hint) only when it reads before
	// it writes, which over TLS 1.3 it often does not (write: broken
	// pipe), and on a busy machine hardly ever.
	waitFor(t, "the node with an expired certificate to say so, at start and at a reconnect", func() bool {
		return strings.Count(expired.out.String(), "--cert has expired: the control plane will refuse this node; issue a new certificate with 'sluicectl cert issue'") >= 3
	})
	// A node without TLS: the control plane closes its connections
	// unanswered, and the node says what that most likely means.
	plain := start(t, "sluice-dp", "--cp", cpAddr, "--node-id", "edge-4", "--admin", "")
	waitFor(t, "the node without TLS to give the hint", func() bool {
		return strings.Contains(plain.out.String(), "error reading server preface: EOF") &&
			strings.Contains(plain.out.String(), `hint="the control plane closed the connection before it spoke gRPC, as one with TLS (--tls-cert) does to a node without --ca, --cert and --key"`)
	})
	if out, _, _ := ctlAs(viewTok, "nodes"); strings.Contains(out, "evil") || strings.Count(out, "edge-1") != 1 {
		t.Errorf("nodes lists a refused node:\n%s", out)
	}
	if !node.alive() {
		t.Error("the good node exited")
	}

	// The audit log has every change attempt, with who, from where, and how it ended.
	b, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	var entries []auth.Entry
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		var e auth.Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		entries = append(entries, e)
	}
	want := []struct{ identity, method, outcome, text string }{
		{"admin", "/sluice.v1.AuthService/IssueCert", "ok", ""},
		{"admin", "/sluice.v1.AuthService/CreateToken", "ok", ""},
		{"ops", "/sluice.v1.ConfigService/Apply", "ok", ""},
		{"watcher", "/sluice.v1.ConfigService/Apply", "PermissionDenied", "needs role operator"},
		{"watcher", "/sluice.v1.ConfigService/UpdateEndpoint", "PermissionDenied", "needs role operator"},
		{"watcher", "/sluice.v1.ConfigService/Rollback", "PermissionDenied", "needs role operator"},
		{"watcher", "/sluice.v1.ConfigService/ShutdownSessions", "PermissionDenied", "needs role operator"},
		{"watcher", "/sluice.v1.AuthService/CreateToken", "PermissionDenied", "needs role admin"},
		{"ops", "/sluice.v1.ConfigService/Get", "PermissionDenied", "show_secrets needs the admin role"},
		{"admin", "/sluice.v1.ConfigService/Get", "ok", ""},
		{"temp", "/sluice.v1.ConfigService/Apply", "Unauthenticated", "expired at"},
		{"ops", "/sluice.v1.ConfigService/UpdateEndpoint", "ok", ""},
	}
	for _, w := range want {
		found := false
		for _, e := range entries {
			if e.Identity == w.identity && e.Method == w.method && e.Outcome == w.outcome && strings.Contains(e.Error, w.text) &&
				strings.HasPrefix(e.Peer, "127.0.0.1:") && !e.Time.IsZero() {
				found = true
			}
		}
		if !found {
			t.Errorf("no audit line %+v in:\n%s", w, b)
		}
	}
	if fi, _ := os.Stat(auditFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %04o, want 0600", fi.Mode().Perm())
	}

	// Rotated as logrotate does: moved away, then SIGHUP. The next line
	// goes to a new file at the path, made 0600 too.
	if err := os.Rename(auditFile, auditFile+".1"); err != nil {
		t.Fatal(err)
	}
	if err := cp.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new audit log at the path", func() bool { _, err := os.Stat(auditFile); return err == nil })
	ctlAs(viewTok, "drain", "web/web1")
	waitFor(t, "the refused drain in the new audit log", func() bool {
		b, _ := os.ReadFile(auditFile)
		return strings.Count(string(b), "\n") == 1 && strings.Contains(string(b), `"identity":"watcher"`) &&
			strings.Contains(string(b), `"outcome":"PermissionDenied"`)
	})
	if fi, _ := os.Stat(auditFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("new audit log mode %04o, want 0600", fi.Mode().Perm())
	}
	if !cp.alive() {
		t.Error("sluice-cp exited on SIGHUP")
	}
}

// tokenCreds sends a token over plain gRPC, as sluicectl does to a
// loopback control plane without TLS.
type tokenCreds string

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return false }

// TestSecurityDashboardToken: on a control plane that checks tokens, the
// dashboard asks for one, shows the fleet with a viewer's, refuses that
// viewer's drain with the API's words, and drains with an operator's.
func TestSecurityDashboardToken(t *testing.T) {
	ctx, _ := browser(t)
	key, _, err := auth.LoadOrCreateKey(filepath.Join(t.TempDir(), "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := controlplane.New(controlplane.Options{Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", DataDir: t.TempDir(),
		Security: auth.New(auth.Config{TokenKey: key}), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	t.Cleanup(func() { cancel(); <-done })
	mint := func(name string, role sluicev1.Role) string {
		tok, _, err := key.Mint(name, role, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	viewTok, opsTok := mint("alice", sluicev1.Role_ROLE_VIEWER), mint("ops", sluicev1.Role_ROLE_OPERATOR)
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(tokenCreds(opsTok)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := sluicev1.NewConfigServiceClient(conn)
	a := startBackend(t, "a")
	snap, err := snapshot.Parse(fmt.Appendf(nil, `
clusters:
  - name: web
    endpoints:
      - { name: a, address: %s }
listeners:
  - { name: web, address: %s, protocol: HTTP, default_cluster: web }
`, a.addr, freeAddr(t)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithTimeout(context.Background(), testTimeout)
	defer acancel()
	resp, err := api.Apply(actx, &sluicev1.ApplyRequest{Snapshot: snap})
	if err != nil {
		t.Fatal(err)
	}
	waitVersion(t, startNode(t, srv.Addr().String(), "node-1"), resp.GetVersion())

	aRow := `tr[data-endpoint="web/a"]`
	if err := chromedp.Do(ctx,
		chromedp.Navigate("http://"+srv.HTTPAddr().String()+"/"),
		chromedp.WaitVisible(`#token-form`),
		chromedp.SetValue(`#token`, viewTok),
		chromedp.Click(`#token-use`),
		chromedp.WaitVisible(`[data-node="node-1"]`),
		chromedp.WaitVisible(aRow+`[data-state="ACTIVE"]`),
		chromedp.WaitVisible(`#token-forget`),
	); err != nil {
		t.Fatalf("dashboard with a viewer's token: %v", err)
	}
	clickUntil(t, ctx, aRow+` button[data-action="drain"]`, `.toast.bad`)
	toast, err := chromedp.Run(ctx, chromedp.Text(`.toast.bad`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(toast, `token "alice" has role viewer; UpdateEndpoint needs role operator`) {
		t.Errorf("the viewer's drain says %q", toast)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(`#token-forget`),
		chromedp.SetValue(`#token`, opsTok),
		chromedp.Click(`#token-use`),
	); err != nil {
		t.Fatalf("an operator's token: %v", err)
	}
	clickUntil(t, ctx, aRow+` button[data-action="drain"]`, aRow+`[data-state="DRAINING"]`)
	h, err := api.History(actx, &sluicev1.HistoryRequest{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if v := h.GetVersions()[0]; v.GetAuthor() != "ops" || v.GetComment() != "drain web/a" {
		t.Errorf("history: %q by %q, want drain web/a by ops", v.GetComment(), v.GetAuthor())
	}
}

// clickUntil clicks sel until want shows. A click lands where sel was when
// it was found: a refresh that moves the page in between, such as the API
// banner coming or going when the token changes, sends it elsewhere without
// an error, so the test clicks again instead of waiting on a lost click.
func clickUntil(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	var err error
	for range 10 {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err = chromedp.Do(cctx, chromedp.WaitVisible(sel), chromedp.Click(sel))
		cancel()
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		werr := chromedp.Do(wctx, chromedp.WaitVisible(want))
		cancel()
		if werr == nil {
			return
		}
		if err == nil {
			err = werr
		}
	}
	t.Fatalf("click %s until %s shows: %v", sel, want, err)
}

// TestServerCertificateRenewal: a control plane whose certificate expires
// within 30 days, and that does not renew it itself
// (--server-cert-renewal=false), warns at its start and says when on
// /metrics; sluice-cp
// issue-server-cert writes a new one over the files, for the same names,
// and the running control plane serves it from the next handshake, with
// no restart: a new node connects and a new TLS client sees the new
// certificate, while the node connected before stays connected.
func TestServerCertificateRenewal(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	p := func(n string) string { return filepath.Join(pkiDir, n) }
	if out, errOut, code := runBin(t, nil, "sluice-cp", "init-ca", "--dir", pkiDir, "--valid", "240h"); code != 0 {
		t.Fatalf("init-ca: exit %d\n%s%s", code, out, errOut)
	}
	cpAddr, cpHTTP := freeAddr(t), freeAddr(t)
	cp := start(t, "sluice-cp", "--listen", cpAddr, "--http", cpHTTP, "--data", filepath.Join(dir, "data"),
		"--tls-cert", p("server.crt"), "--tls-key", p("server.key"), "--ca-cert", p("ca.crt"), "--ca-key", p("ca.key"),
		"--server-cert-renewal=false")
	caPool, err := pki.LoadPool(p("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	// served is the certificate a new TLS connection to the control plane
	// gets, verified against the CA.
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", cpAddr, &tls.Config{RootCAs: caPool, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("TLS to the control plane: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	https := &http.Client{Timeout: testTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}}}
	waitHealthy(t, https, "https://"+cpHTTP)
	expiry := func() float64 {
		t.Helper()
		return promtext.ScrapeWith(t, https, "https://"+cpHTTP+"/metrics").Value("sluice_cp_tls_certificate_expiry_timestamp_seconds")
	}
	before := served()
	if got := expiry(); got != float64(before.NotAfter.Unix()) {
		t.Errorf("sluice_cp_tls_certificate_expiry_timestamp_seconds = %v, want %d (the served certificate's NotAfter)", got, before.NotAfter.Unix())
	}
	if log := cp.out.String(); !strings.Contains(log, "level=WARN msg=\"the control plane's TLS certificate (--tls-cert) expires in 9 days: nodes and sluicectl will refuse to connect to it then; renew it with 'sluice-cp issue-server-cert --dir DIR'") {
		t.Errorf("no warning at the start of a control plane whose certificate expires in 10 days:\n%s", log)
	}

	nodeCert := func(id string) []string {
		t.Helper()
		out, errOut, code := runBin(t, []string{"SLUICE_CP=" + cpAddr, "SLUICE_CA=" + p("ca.crt")}, "sluicectl", "cert", "issue", "--node", id, "--out", filepath.Join(dir, id))
		if code != 0 {
			t.Fatalf("cert issue %s: exit %d\n%s%s", id, code, out, errOut)
		}
		nd := func(n string) string { return filepath.Join(dir, id, n) }
		return []string{"--cp", cpAddr, "--ca", nd("ca.crt"), "--cert", nd(id + ".crt"), "--key", nd(id + ".key"), "--admin", ""}
	}
	start(t, "sluice-dp", nodeCert("n1")...)
	connected := func(id string) bool {
		out, _, _ := runBin(t, []string{"SLUICE_CP=" + cpAddr, "SLUICE_CA=" + p("ca.crt")}, "sluicectl", "nodes")
		for _, r := range tableRows(out) {
			if len(r) == 7 && r[0] == id {
				return r[3] == "connected"
			}
		}
		return false
	}
	waitFor(t, "n1 to connect", func() bool { return connected("n1") })

	out, errOut, code := runBin(t, nil, "sluice-cp", "issue-server-cert", "--dir", pkiDir)
	if code != 0 || !strings.Contains(out, "wrote "+p("server.crt")+"\nwrote "+p("server.key")+"\nserver certificate for localhost, 127.0.0.1, ::1, valid until ") {
		t.Fatalf("issue-server-cert: exit %d\n%s%s", code, out, errOut)
	}
	after := served()
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 || !after.NotAfter.After(before.NotAfter.Add(300*24*time.Hour)) {
		t.Errorf("after issue-server-cert the control plane serves serial %v until %v; want a new certificate, good for a year (the old one: serial %v until %v)",
			after.SerialNumber, after.NotAfter, before.SerialNumber, before.NotAfter)
	}
	if got := expiry(); got != float64(after.NotAfter.Unix()) {
		t.Errorf("after the renewal, sluice_cp_tls_certificate_expiry_timestamp_seconds = %v, want %d", got, after.NotAfter.Unix())
	}
	start(t, "sluice-dp", nodeCert("n2")...)
	waitFor(t, "n2 to connect after the renewal", func() bool { return connected("n2") })
	if !connected("n1") {
		t.Error("n1 is no longer connected after the renewal")
	}
}

// waitHealthy waits until the control plane at base (its --http, as a URL)
// answers /healthz through client.
func waitHealthy(t *testing.T, client *http.Client, base string) {
	t.Helper()
	waitFor(t, "sluice-cp "+base+"/healthz", func() bool {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
}

// TestNodeCertificateRenewal: a node renews its certificate through the
// control plane once two thirds of its life has passed, with a key of its
// own, written over its --cert and --key; once the certificate it started
// with has expired, it connects again, to a restarted control plane, with
// the renewed one. The control plane logs and audits the renewal.
func TestNodeCertificateRenewal(t *testing.T) {
	dir := t.TempDir()
	pkiDir, nodeDir := filepath.Join(dir, "pki"), filepath.Join(dir, "n1")
	p := func(n string) string { return filepath.Join(pkiDir, n) }
	if out, errOut, code := runBin(t, nil, "sluice-cp", "init-ca", "--dir", pkiDir); code != 0 {
		t.Fatalf("init-ca: exit %d\n%s%s", code, out, errOut)
	}
	cpAddr, auditFile := freeAddr(t), filepath.Join(dir, "audit.log")
	cpArgs := []string{"--listen", cpAddr, "--http", "", "--data", filepath.Join(dir, "data"),
		"--tls-cert", p("server.crt"), "--tls-key", p("server.key"), "--ca-cert", p("ca.crt"), "--ca-key", p("ca.key"), "--audit-log", auditFile}
	cp := start(t, "sluice-cp", cpArgs...)
	waitListening(t, "sluice-cp", cpAddr)
	env := []string{"SLUICE_CP=" + cpAddr, "SLUICE_CA=" + p("ca.crt")}
	// Good for 12 s: due for renewal after 8.
	if out, errOut, code := runBin(t, env, "sluicectl", "cert", "issue", "--node", "n1", "--out", nodeDir, "--valid", "12s"); code != 0 {
		t.Fatalf("cert issue: exit %d\n%s%s", code, out, errOut)
	}
	certFile, keyFile := filepath.Join(nodeDir, "n1.crt"), filepath.Join(nodeDir, "n1.key")
	first, _, err := pki.LoadCert(certFile)
	if err != nil {
		t.Fatal(err)
	}
	node := start(t, "sluice-dp", "--cp", cpAddr, "--ca", filepath.Join(nodeDir, "ca.crt"), "--cert", certFile, "--key", keyFile, "--admin", "")
	connected := func() bool {
		out, _, _ := runBin(t, env, "sluicectl", "nodes")
		for _, r := range tableRows(out) {
			if len(r) == 7 && r[0] == "n1" {
				return r[3] == "connected"
			}
		}
		return false
	}
	waitFor(t, "n1 to connect", connected)

	var renewed *x509.Certificate
	waitFor(t, "the node to renew its certificate", func() bool {
		renewed, _, err = pki.LoadCert(certFile)
		return err == nil && renewed.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if id, err := pki.NodeID(renewed); id != "n1" || err != nil || !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("the renewed certificate names %q (%v), until %v; want n1, after %v", id, err, renewed.NotAfter, first.NotAfter)
	}
	if d := pki.Validity(renewed); d < 11*time.Second || d > 13*time.Second {
		t.Errorf("the renewed certificate is good for %v, want 12s as the first", d)
	}
	waitFor(t, "the renewed key beside it", func() bool {
		_, err := tls.LoadX509KeyPair(certFile, keyFile)
		return err == nil
	})
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s after the renewal: %v, want mode 0600", keyFile, err)
	}
	waitFor(t, "the logs of the renewal", func() bool {
		return strings.Contains(node.out.String(), `msg="renewed the node certificate through the control plane: the next connection to a control plane presents it"`) &&
			strings.Contains(cp.out.String(), `msg="node certificate renewed" component=auth node=n1`)
	})
	audit, _ := os.ReadFile(auditFile)
	if !strings.Contains(string(audit), `"identity":"n1","node":"n1"`) || !strings.Contains(string(audit), `"method":"/sluice.v1.NodeCertService/RenewCert","target":"node n1","outcome":"ok"`) {
		t.Errorf("the audit log does not have the renewal:\n%s", audit)
	}

	// Once the first certificate has expired, only a renewed one gets the
	// node in again.
	time.Sleep(time.Until(first.NotAfter) + 500*time.Millisecond)
	cp.stop(t)
	cp = start(t, "sluice-cp", cpArgs...)
	waitFor(t, "n1 to connect to the restarted control plane after its first certificate expired", connected)
}

// TestServerCertificateRenewsItself: a control plane with its CA's key
// renews the certificate it serves once two thirds of its life has
// passed, for the same names and as long again, over its files, and
// serves it with no restart: once the first has expired, clients verify
// the new one; and it renews that one when it is due, within seconds.
func TestServerCertificateRenewsItself(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	p := func(n string) string { return filepath.Join(pkiDir, n) }
	// Good for 6 s: due for renewal after 4.
	if out, errOut, code := runBin(t, nil, "sluice-cp", "init-ca", "--dir", pkiDir, "--valid", "6s"); code != 0 {
		t.Fatalf("init-ca: exit %d\n%s%s", code, out, errOut)
	}
	first, _, err := pki.LoadCert(p("server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(pki.RenewalTime(first)) + 100*time.Millisecond)
	cpAddr := freeAddr(t)
	cp := start(t, "sluice-cp", "--listen", cpAddr, "--http", "", "--data", filepath.Join(dir, "data"),
		"--tls-cert", p("server.crt"), "--tls-key", p("server.key"), "--ca-cert", p("ca.crt"), "--ca-key", p("ca.key"))
	caPool, err := pki.LoadPool(p("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	served := func() (*x509.Certificate, error) {
		c, err := tls.Dial("tcp", cpAddr, &tls.Config{RootCAs: caPool, ServerName: "localhost"})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0], nil
	}
	var renewed *x509.Certificate
	waitFor(t, "the control plane to serve a renewed certificate", func() bool {
		renewed, err = served()
		return err == nil && renewed.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if names := pki.ServerNames(renewed); !slices.Equal(names, pki.ServerNames(first)) || !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("the renewed certificate names %v until %v; want %v, after %v", names, renewed.NotAfter, pki.ServerNames(first), first.NotAfter)
	}
	if onDisk, _, err := pki.LoadCert(p("server.crt")); err != nil || onDisk.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("server.crt holds %v (%v), want the renewed certificate", onDisk, err)
	}
	if log := cp.out.String(); !strings.Contains(log, `msg="renewed the control plane's TLS certificate (--tls-cert) with its CA (--ca-key): new TLS connections get it"`) {
		t.Errorf("the renewal is not logged:\n%s", log)
	}
	time.Sleep(time.Until(first.NotAfter) + 100*time.Millisecond)
	if _, err := served(); err != nil {
		t.Errorf("TLS to the control plane once its first certificate expired: %v", err)
	}
	if out, errOut, code := runBin(t, []string{"SLUICE_CP=" + cpAddr, "SLUICE_CA=" + p("ca.crt")}, "sluicectl", "nodes"); code != 0 {
		t.Errorf("sluicectl nodes once the first certificate expired: exit %d\n%s%s", code, out, errOut)
	}
	// The renewed one is renewed in its turn, though that is sooner than
	// the hourly look.
	time.Sleep(time.Until(renewed.NotAfter) + 100*time.Millisecond)
	if third, err := served(); err != nil || third.SerialNumber.Cmp(renewed.SerialNumber) == 0 {
		t.Errorf("TLS to the control plane once the renewed certificate expired: %v; want a third certificate", err)
	}
}

// TestNodeCertificateRevoked: sluicectl cert revoke cuts a node off
// through its running control plane: its streams end with why, it is not
// let back in with that certificate, and cert revoked lists it; a new
// certificate issued to it over its files lets it back at its next
// reconnect, with no restart.
func TestNodeCertificateRevoked(t *testing.T) {
	dir := t.TempDir()
	pkiDir, nodeDir := filepath.Join(dir, "pki"), filepath.Join(dir, "n1")
	p := func(n string) string { return filepath.Join(pkiDir, n) }
	if out, errOut, code := runBin(t, nil, "sluice-cp", "init-ca", "--dir", pkiDir); code != 0 {
		t.Fatalf("init-ca: exit %d\n%s%s", code, out, errOut)
	}
	cpAddr := freeAddr(t)
	start(t, "sluice-cp", "--listen", cpAddr, "--http", "", "--data", filepath.Join(dir, "data"),
		"--tls-cert", p("server.crt"), "--tls-key", p("server.key"), "--ca-cert", p("ca.crt"), "--ca-key", p("ca.key"))
	waitListening(t, "sluice-cp", cpAddr)
	env := []string{"SLUICE_CP=" + cpAddr, "SLUICE_CA=" + p("ca.crt")}
	issue := func() {
		t.Helper()
		if out, errOut, code := runBin(t, env, "sluicectl", "cert", "issue", "--node", "n1", "--out", nodeDir); code != 0 {
			t.Fatalf("cert issue: exit %d\n%s%s", code, out, errOut)
		}
	}
	issue()
	// Revocations count whole seconds: revoke in a later one.
	first, _, err := pki.LoadCert(filepath.Join(nodeDir, "n1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(first.NotBefore.Add(pki.Backdate + time.Second)))
	node := start(t, "sluice-dp", "--cp", cpAddr, "--ca", filepath.Join(nodeDir, "ca.crt"),
		"--cert", filepath.Join(nodeDir, "n1.crt"), "--key", filepath.Join(nodeDir, "n1.key"), "--admin", "")
	state := func() string {
		out, _, _ := runBin(t, env, "sluicectl", "nodes")
		for _, r := range tableRows(out) {
			if len(r) == 7 && r[0] == "n1" {
				return r[3]
			}
		}
		return ""
	}
	waitFor(t, "n1 to connect", func() bool { return state() == "connected" })

	// A typo of the node's id would revoke nobody: a dry run shows the
	// warning a revocation gets.
	_, errOut, code := runBin(t, env, "sluicectl", "cert", "revoke", "--node", "m1", "--dry-run")
	if want := `sluicectl cert revoke: warning: node "m1" is not among the nodes this control plane has seen lately (did you mean "n1"?)`; code != 0 || !strings.HasPrefix(errOut, want) {
		t.Errorf("cert revoke --node m1 --dry-run: exit %d, stderr %q; want 0 and %q", code, errOut, want)
	}
	out, errOut, code := runBin(t, env, "sluicectl", "cert", "revoke", "--node", "n1")
	if code != 0 || !strings.Contains(out, "\n  + revoked node n1: its certificates issued before ") || errOut != "" {
		t.Fatalf("cert revoke: exit %d\n%s%s", code, out, errOut)
	}
	waitFor(t, "n1 to be cut off", func() bool {
		return state() == "disconnected" && strings.Contains(node.out.String(), "node n1's certificate was revoked at ")
	})
	out, _, code = runBin(t, env, "sluicectl", "cert", "revoked")
	if rows := tableRows(out); code != 0 || len(rows) != 2 || rows[1][0] != "n1" {
		t.Errorf("cert revoked: exit %d\n%s", code, out)
	}
	time.Sleep(time.Second) // the node keeps trying, and stays out
	if s := state(); s != "disconnected" {
		t.Errorf("n1 is %s with its revoked certificate, want disconnected", s)
	}

	// A new certificate, over the node's files: it is back.
	issue()
	waitFor(t, "n1 to connect again with a new certificate", func() bool { return state() == "connected" })
}

// waitListening waits until what listens on addr.
func waitListening(t *testing.T, what, addr string) {
	t.Helper()
	waitFor(t, what+" to listen on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}
