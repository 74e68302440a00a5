package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/dataplane"
)

// TestRequestIDs: with request_id on, each request reaches the endpoint
// with a new X-Request-ID of the node's (a client's own is replaced), and
// the access log's line for it has the same request_id: a request can be
// followed from the node's log into the endpoint's. With in_response, the
// client gets the same id, on a rule's 403 too.
func TestRequestIDs(t *testing.T) {
	web := startWireBackend(t)
	c := startCP(t, t.TempDir(), "")
	lst := freeAddr(t)
	var out logBuffer
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{AccessLog: &out})
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - name: public
    address: %s
    protocol: HTTP
    default_cluster: web
    http:
      request_id: { in_response: true }
    rules:
      - { name: no-admin, match: { path: { prefix: [/admin] } }, deny: {} }
`, web.addr, lst)))

	client := &http.Client{Timeout: testTimeout}
	sent := map[string]bool{}  // the ids the endpoint got
	ids := map[string]string{} // by path
	for _, tc := range []struct{ path, own string }{{"/one", ""}, {"/two", ""}, {"/spoofed", "mine"}} {
		req, _ := http.NewRequest("GET", "http://"+lst+tc.path, nil)
		if tc.own != "" {
			req.Header.Set("X-Request-ID", tc.own)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The endpoint writes the values it got: one id, a UUID, not the
		// client's.
		id, ok := strings.CutPrefix(string(body), "X-Forwarded-For: 127.0.0.1\nX-Forwarded-Proto: http\nX-Forwarded-Host: "+lst+"\nX-Request-Id: ")
		if id = strings.TrimSuffix(id, "\n"); !ok || len(id) != 36 || strings.Count(id, "-") != 4 || sent[id] {
			t.Fatalf("%s: the endpoint got X-Request-ID %s, want one new id", tc.path, body)
		}
		sent[id], ids[tc.path] = true, id
		// The client gets the endpoint's id (the wire backend sends none
		// of its own).
		if got := resp.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != id {
			t.Errorf("%s: the client got X-Request-ID %q, the endpoint %s", tc.path, got, id)
		}
	}
	// A request a rule denies gets an id too, which the log has.
	resp, err := client.Get("http://" + lst + "/admin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if id := resp.Header.Get("X-Request-Id"); resp.StatusCode != 403 || len(id) != 36 || sent[id] {
		t.Errorf("/admin: %s with X-Request-ID %q, want 403 with a new id", resp.Status, id)
	} else {
		ids["/admin"] = id
	}

	flushLog(t, dp, client)
	logged := map[string]string{}
	for _, l := range out.lines(t) {
		logged[fmt.Sprint(l["path"])] = fmt.Sprint(l["request_id"])
	}
	for path, id := range ids {
		if logged[path] != id {
			t.Errorf("%s: the endpoint got id %s, the access log has %s", path, id, logged[path])
		}
	}
}
