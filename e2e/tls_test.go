package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testcert"
)

// selfSigned returns a PEM certificate and key for the given names (DNS
// names and IP addresses), valid for an hour.
func selfSigned(t *testing.T, names ...string) (certPEM, keyPEM string) {
	t.Helper()
	return testcert.SelfSigned(t, names...)
}

// indent prefixes every line of s, for a PEM block in a YAML literal.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}

// TestHTTPSListener terminates TLS with two certificates: one inline, one
// read from files on the node. curl -k gets an answer from the backend
// over HTTPS; SNI picks the certificate whose names cover it, and a client
// without a matching SNI gets the first one. A TLS client cannot reach the
// backend through a plaintext request, and a broken handshake does not
// disturb the listener.
func TestHTTPSListener(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	b := startBackend(t, "b")
	dp := startNode(t, c.addr, "node-1")
	listen := freeAddr(t)
	certA, keyA := selfSigned(t, "a.example", "*.a.example")
	certB, keyB := selfSigned(t, "b.example")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key")
	if err := os.WriteFile(certFile, []byte(certB), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(keyB), 0o600); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints:
      - { name: b, address: %s }
listeners:
  - name: https
    address: %s
    protocol: HTTP
    default_cluster: web
    rules:
      - match: { sni: { exact: b.example } }
        respond: { status: 200, body: "served for b.example" }
      - match: { path: { prefix: /old } }
        redirect: { path: /new }
    tls:
      min_version: TLS_1_2
      certificates:
        - cert_pem: |
%s
          key_pem: |
%s
        - { cert_file: %s, key_file: %s }
`, b.addr, listen, indent(certA, "            "), indent(keyA, "            "), certFile, keyFile)))

	// A real client: curl, certificate not verified (-k), as a user would
	// try a self-signed setup.
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is needed for this test (apt-get install curl): %v", err)
	}
	_, port, _ := net.SplitHostPort(listen)
	out, err := exec.Command("curl", "-sS", "-k", "--max-time", "10",
		"--resolve", "www.a.example:"+port+":127.0.0.1", "https://www.a.example:"+port+"/").CombinedOutput()
	if err != nil || string(out) != "b" {
		t.Fatalf("curl -k over HTTPS: %v: %s", err, out)
	}

	served := func(sni string) string {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: testTimeout}, "tcp", listen,
			&tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS handshake with SNI %q: %v", sni, err)
		}
		defer conn.Close()
		st := conn.ConnectionState()
		if st.NegotiatedProtocol != "" && st.NegotiatedProtocol != "http/1.1" {
			t.Errorf("ALPN %q", st.NegotiatedProtocol)
		}
		return st.PeerCertificates[0].Subject.CommonName
	}
	for sni, want := range map[string]string{
		"a.example":     "a.example",
		"www.a.example": "a.example",
		"b.example":     "b.example",
		"c.example":     "a.example", // no match: the first certificate
		"":              "a.example",
	} {
		if got := served(sni); got != want {
			t.Errorf("SNI %q got the certificate of %q, want %q", sni, got, want)
		}
	}

	// TLS 1.1 is below min_version.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: testTimeout}, "tcp", listen,
		&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10})
	if err == nil {
		conn.Close()
		t.Errorf("a TLS 1.1 handshake succeeded")
	}
	// Plain HTTP to the HTTPS port gets no HTTP answer, and the listener
	// keeps serving.
	if body, err := tcpGet(listen); err == nil {
		t.Errorf("plaintext request to the HTTPS listener answered %q", body)
	}
	if got := served("b.example"); got != "b.example" {
		t.Errorf("after a bad handshake: %q", got)
	}

	// A redirect that keeps the scheme keeps https (and the port).
	client := &http.Client{
		Timeout:       testTimeout,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "a.example"}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, _ := http.NewRequest("GET", "https://"+listen+"/old?x=1", nil)
	req.Host = "a.example:" + port
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "https://a.example:"+port+"/new?x=1" {
		t.Errorf("redirect on the HTTPS listener: %d %q, want 302 to https://a.example:%s/new?x=1", resp.StatusCode, loc, port)
	}

	// Rules see the handshake's server name.
	out, err = exec.Command("curl", "-sS", "-k", "--max-time", "10",
		"--resolve", "b.example:"+port+":127.0.0.1", "https://b.example:"+port+"/").CombinedOutput()
	if err != nil || string(out) != "served for b.example" {
		t.Errorf("a rule matching sni b.example: %v: %s", err, out)
	}
}

// TestTLSKeysRedacted: an inline private key is stored, but sluicectl get
// shows it as <redacted> unless --show-secrets is given, and applying what
// get printed keeps the stored key (nothing changes). A <redacted> key that
// matches no stored certificate is refused with its path.
func TestTLSKeysRedacted(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	cert, key := selfSigned(t, "a.example")
	b := startBackend(t, "b")
	yaml := fmt.Sprintf(`
clusters:
  - name: web
    endpoints:
      - { name: b, address: %s }
listeners:
  - name: https
    address: %s
    protocol: HTTP
    default_cluster: web
    tls:
      certificates:
        - cert_pem: |
%s
          key_pem: |
%s
`, b.addr, freeAddr(t), indent(cert, "            "), indent(key, "            "))
	v := c.apply(t, yaml)
	keyLine := strings.Split(strings.TrimSpace(key), "\n")[1]

	out, _, code := ctl(t, c.addr, "get")
	if code != 0 || strings.Contains(out, keyLine) || !strings.Contains(out, "<redacted>") {
		t.Fatalf("get (exit %d) shows the key or no <redacted>:\n%s", code, out)
	}
	for _, args := range [][]string{{"get", "-o", "json"}, {"history"}} {
		if out, _, _ := ctl(t, c.addr, args...); strings.Contains(out, keyLine) {
			t.Errorf("%v shows the private key", args)
		}
	}
	if secret, _, _ := ctl(t, c.addr, "get", "--show-secrets"); !strings.Contains(secret, keyLine) {
		t.Errorf("get --show-secrets does not show the key")
	}

	dir := t.TempDir()
	back := writeFile(t, dir, "back.yaml", out)
	if out, errOut, code := ctl(t, c.addr, "diff", "-f", back); code != 0 || strings.TrimSpace(out) != "no changes" {
		t.Errorf("diff of get's output: exit %d, %s%s; want no changes", code, out, errOut)
	}
	if out, errOut, code := ctl(t, c.addr, "apply", "-f", back); code != 0 || strings.TrimSpace(out) != fmt.Sprintf("unchanged (version %d)", v) {
		t.Errorf("applying get's output back: exit %d, %s%s; want unchanged", code, out, errOut)
	}
	if secret, _, _ := ctl(t, c.addr, "get", "--show-secrets"); !strings.Contains(secret, keyLine) {
		t.Errorf("the stored key was lost by applying <redacted> back")
	}

	other, _ := selfSigned(t, "other.example")
	bad := writeFile(t, dir, "bad.yaml", strings.Replace(out, indent(cert, "            "), indent(other, "            "), 1))
	_, errOut, code := ctl(t, c.addr, "apply", "-f", bad)
	if code != 1 || !strings.Contains(errOut, "listeners[0].tls.certificates[0].key_pem") {
		t.Errorf("a <redacted> key for a new certificate: exit %d, %s", code, errOut)
	}
}

// TestTLSResumesAcrossApply: an apply that leaves the listener's TLS as it
// was keeps its session ticket keys, so a returning client resumes its
// session instead of a full handshake.
func TestTLSResumesAcrossApply(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	b := startBackend(t, "b")
	dp := startNode(t, c.addr, "node-1")
	listen := freeAddr(t)
	cert, key := selfSigned(t, "a.example")
	snap := func(weight int) string {
		return fmt.Sprintf(`
clusters:
  - name: web
    endpoints:
      - { name: b, address: %s, weight: %d }
listeners:
  - name: https
    address: %s
    protocol: HTTP
    default_cluster: web
    tls:
      certificates:
        - cert_pem: |
%s
          key_pem: |
%s
`, b.addr, weight, listen, indent(cert, "            "), indent(key, "            "))
	}
	waitVersion(t, dp, c.apply(t, snap(1)))
	cache := tls.NewLRUClientSessionCache(4)
	visit := func() bool {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: testTimeout}, "tcp", listen,
			&tls.Config{ServerName: "a.example", InsecureSkipVerify: true, ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(testTimeout))
		// A request read to its end also reads the session ticket that
		// TLS 1.3 sends after the handshake.
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if body, err := io.ReadAll(conn); err != nil || !strings.HasSuffix(string(body), "b") {
			t.Fatalf("request over TLS: %v %q", err, body)
		}
		return conn.ConnectionState().DidResume
	}
	if visit() {
		t.Fatal("the first visit resumed a session")
	}
	if !visit() {
		t.Fatal("a second visit did not resume: tickets do not work at all")
	}
	waitVersion(t, dp, c.apply(t, snap(2)))
	if !visit() {
		t.Errorf("after an apply that changed a weight, the client could not resume its TLS session")
	}
}
