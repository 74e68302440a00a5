package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/internal/promtext"
)

// TestEarlyAnswerEndToEnd: an endpoint of Go's net/http that refuses a
// large upload without reading it (a 413, then it closes the connection)
// has its answer reach a client of Go's net/http through a node, and the
// node logs the request with the endpoint's status; the next upload, on a
// new connection, is refused alike.
func TestEarlyAnswerEndToEnd(t *testing.T) {
	endpoint := errorBackend(t, http.StatusRequestEntityTooLarge, "too large")

	c := startCP(t, t.TempDir(), "")
	var out logBuffer
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{AccessLog: &out})
	lst := freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: app
    endpoints:
      - { name: refuser, address: "%s" }
listeners:
  - { name: web, address: "%s", protocol: HTTP, default_cluster: app }
`, endpoint, lst)))

	client := &http.Client{Timeout: testTimeout}
	body := make([]byte, 8<<20)
	for i := range 2 {
		resp, err := client.Post(fmt.Sprintf("http://%s/up?i=%d", lst, i), "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || string(got) != "too large\n" {
			t.Fatalf("upload %d: %d %q, want the endpoint's 413 \"too large\"", i, resp.StatusCode, got)
		}
		if !resp.Close {
			t.Errorf("upload %d: the response does not close the connection, whose body was not read", i)
		}
	}
	client.CloseIdleConnections()
	waitFor(t, "the connections to end on the node", func() bool {
		m := promtext.Scrape(t, "http://"+dp.AdminAddr().String()+"/metrics")
		return m.Value("sluice_listener_connections", "web") == 0
	})
	dp.Close() // flushes the log
	var requests []map[string]any
	for _, l := range out.lines(t) {
		if l["msg"] == "request" {
			requests = append(requests, l)
		}
	}
	if len(requests) != 2 {
		t.Fatalf("%d request lines for 2 uploads", len(requests))
	}
	for _, l := range requests {
		for k, v := range map[string]any{"listener": "web", "method": "POST", "status": 413.0, "cluster": "app", "endpoint": "refuser"} {
			if l[k] != v {
				t.Errorf("%v: %s = %v, want %v", l["path"], k, l[k], v)
			}
		}
	}
}

// TestEarlyRefusalReachesUploader: nginx refuses an upload larger than its
// client_max_body_size with a 413 as soon as it has the request's head,
// says it closes, and reads on, discarding the body (its lingering
// close). curl uploading 4 MiB at 1 MiB/s gets that 413 through a node
// while it sends, and stops sending, as it does straight to nginx (RFC
// 9112 §9.5). The node used to hold the answer back until curl had sent
// the whole body. curl's own count of what it uploaded tells which.
func TestEarlyRefusalReachesUploader(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	ng := startNginx(t, `listen %s;
        client_max_body_size 1k;
        location / { return 200 "ok\n"; }`)
	c := startCP(t, t.TempDir(), "")
	dp := startNode(t, c.addr, "node-1")
	web := freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - { name: up, endpoints: [ { name: nginx, address: %s } ] }
listeners:
  - { name: web, address: %s, protocol: HTTP, default_cluster: up }
`, ng.addr, web)))

	const size = 4 << 20
	file := filepath.Join(t.TempDir(), "upload")
	if err := os.WriteFile(file, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, to := range []struct{ name, addr string }{{"nginx", ng.addr}, {"node", web}} {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		// Without Expect: 100-continue (curl's default for a large body),
		// so that the body goes at once and the answer meets it on the way.
		out, err := exec.CommandContext(ctx, "curl", "-sS", "-o", "/dev/null", "-H", "Expect:",
			"--limit-rate", "1M", "--data-binary", "@"+file,
			"-w", "%{http_code} %{size_upload}", "http://"+to.addr+"/upload").CombinedOutput()
		cancel()
		code, sent, _ := strings.Cut(string(out), " ")
		n, perr := strconv.ParseInt(sent, 10, 64)
		if err != nil || perr != nil {
			t.Fatalf("curl to %s: %v, %q", to.name, err, out)
		}
		if code != "413" {
			t.Errorf("curl to %s got %s, want nginx's 413", to.name, code)
		}
		if n >= size {
			t.Errorf("curl to %s uploaded all %d bytes: the 413 came only after the body", to.name, n)
		}
		t.Logf("curl to %s: %s after %d of %d bytes", to.name, code, n, size)
	}
}
