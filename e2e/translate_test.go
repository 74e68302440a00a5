package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// This file tests what an HTTP/1.1 client gets on a listener whose rules
// may route to an http2 cluster, where the HTTP/2 engine serves every
// connection (Translate), and what reaches endpoints through that engine.

// startTargetBackend is an HTTP server (h2c only, with h2) that answers
// with the request target and Host it got, as "name uri=... host=...".
func startTargetBackend(t *testing.T, name string, h2 bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s uri=%s host=%s", name, r.RequestURI, r.Host)
	})}
	if h2 {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		srv.Protocols = &p
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// A path that starts with "//" is a path, not an authority: it reaches the
// endpoint as it was sent (origin-form), over HTTP/1.1 and HTTP/2, from
// HTTP/1.1 and HTTP/2 clients alike, so that the path the rules saw is the
// one the endpoint serves and the Host stays the client's.
func TestDoubleSlashPathTranslated(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	web, grpc := startTargetBackend(t, "web", false), startTargetBackend(t, "h2", true)
	dp := startNode(t, c.addr, "node-1")
	listen := freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [ { name: web, address: %s } ]
  - name: grpc
    http2: true
    endpoints: [ { name: h2, address: %s } ]
listeners:
  - name: web
    address: %s
    protocol: HTTP
    default_cluster: web
    http: { h2c: true }
    rules:
      - { match: { path: { prefix: /admin } }, deny: {} }
      - { match: { host: { exact: h2.test } }, route: grpc }
`, web, grpc, listen)))

	for _, cl := range []struct {
		name   string
		client *http.Client
	}{
		{"HTTP/1.1 client", &http.Client{Timeout: testTimeout, Transport: &http.Transport{}}},
		{"h2c client", h2Client(true)},
	} {
		for _, tc := range []struct{ host, path, want string }{
			{"app.test", "/admin", "request denied\n"},
			{"app.test", "//x.example/admin", "web uri=//x.example/admin host=app.test"},
			{"x.example", "//x.example/admin", "web uri=//x.example/admin host=x.example"},
			{"h2.test", "//h2.test/admin", "h2 uri=//h2.test/admin host=h2.test"},
			{"h2.test", "//other.test/admin?q=1", "h2 uri=//other.test/admin?q=1 host=h2.test"},
		} {
			req, _ := http.NewRequest("GET", "http://"+listen+"/", nil)
			req.Host = tc.host
			// URL.Path, not Opaque: the client's own RequestURI would turn
			// an Opaque "//x/y" into an absolute URL too.
			p, q, _ := strings.Cut(tc.path, "?")
			req.URL.Path, req.URL.RawQuery = p, q
			resp, err := cl.client.Do(req)
			if err != nil {
				t.Fatalf("%s: GET %s (Host %s): %v", cl.name, tc.path, tc.host, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != tc.want {
				t.Errorf("%s: GET %s (Host %s): %d %q, want %q", cl.name, tc.path, tc.host, resp.StatusCode, body, tc.want)
			}
		}
	}
}
