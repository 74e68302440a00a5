package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNormalizedPathHoldsADenyRule: a deny rule on /admin is walked
// around by paths an endpoint reads as /admin ("/x/../admin", "/%61dmin",
// "//admin") while the listener matches paths as sent; with normalize_path
// and merge_slashes it holds for them all, and the endpoint gets the
// canonical path of the requests it serves. sluice-cp, sluice-dp and
// sluicectl are the real binaries; requests are raw bytes on a socket.
func TestNormalizedPathHoldsADenyRule(t *testing.T) {
	dir := t.TempDir()
	cpAddr, lst := freeAddr(t), freeAddr(t)
	start(t, "sluice-cp", "--listen", cpAddr, "--http", "", "--data", filepath.Join(dir, "data"))
	start(t, "sluice-dp", "--cp", cpAddr, "--node-id", "edge-1", "--admin", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "backend got "+r.RequestURI)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	waitFor(t, "sluice-cp", func() bool { _, _, code := ctl(t, cpAddr, "history"); return code == 0 })
	snap := func(http string) string {
		return fmt.Sprintf(`clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - name: public
    address: %s
    protocol: HTTP
    default_cluster: web
    http: %s
    rules:
      - { name: no-admin, match: { path: { prefix: /admin } }, deny: { status: 403 } }
`, ln.Addr(), lst, http)
	}
	// get sends target raw, on a connection of its own, and returns the
	// status line and body.
	get := func(target string) (string, string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", lst, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", target)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		body, _ := io.ReadAll(resp.Body)
		return resp.Status, string(body)
	}
	walkArounds := []string{"/x/../admin", "/./admin", "/%61dmin", "/%2e%2e/admin/", "//admin"}

	ctlApply(t, cpAddr, snap("{}"))
	waitFor(t, "the listener", func() bool {
		c, err := net.Dial("tcp", lst)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if status, _ := get("/admin"); !strings.HasPrefix(status, "403") {
		t.Fatalf("/admin: %s, want 403", status)
	}
	for _, target := range walkArounds {
		if status, body := get(target); status != "200 OK" || body != "backend got "+target {
			t.Errorf("without normalize_path, %s: %s %q; want it past the rule, as sent", target, status, body)
		}
	}

	stdout, stderr, code := ctl(t, cpAddr, "apply", "--wait", "-f", writeFile(t, dir, "on.yaml", snap("{ normalize_path: true, merge_slashes: true }")))
	if code != 0 || !strings.Contains(stdout, "1 node applied version 2") {
		t.Fatalf("apply with normalize_path: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, target := range walkArounds {
		if status, body := get(target); !strings.HasPrefix(status, "403") || body != "request denied\n" {
			t.Errorf("with normalize_path, %s: %s %q; want the rule's 403", target, status, body)
		}
	}
	for target, want := range map[string]string{
		"/a/./b/../%7Euser//x?q=/../%61": "/a/~user/x?q=/../%61",
		"/files/a%2fb":                   "/files/a%2Fb",
	} {
		if status, body := get(target); status != "200 OK" || body != "backend got "+want {
			t.Errorf("with normalize_path, %s: %s %q; want the backend to get %s", target, status, body, want)
		}
	}
}
