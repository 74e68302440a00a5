package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
)

// clientBehindSnapshot is an HTTP listener "public" over web whose trusted
// peer 127.0.0.9 (an L7 balancer in front) names the client in its
// X-Forwarded-For: one client is denied by its source, and every client
// has a rate of its own. Listener "real-ip", at lst2, writes no forwarding
// headers and reads the client from the peer's X-Real-IP, with the same
// deny.
func clientBehindSnapshot(web *backend, lst, lst2 string) string {
	return fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - name: public
    address: %s
    protocol: HTTP
    default_cluster: web
    http:
      h2c: true
      forwarding: { trusted_peers: [127.0.0.9], client_from_headers: true }
    rules:
      - { name: blocked, match: { source: [127.0.0.5] }, deny: { body: "blocked\n" } }
      - { name: per-client, rate_limit: { requests: 3, period: 1m }, deny: { status: 429, body: "slow down\n" } }
  - name: real-ip
    address: %s
    protocol: HTTP
    default_cluster: web
    http:
      forwarding: { style: NONE, trusted_peers: [127.0.0.9], client_from_headers: true, client_header: X-Real-IP }
    rules:
      - { name: blocked, match: { source: [127.0.0.5] }, deny: { body: "blocked\n" } }
`, web.addr, lst, lst2)
}

// TestClientBehindNginx: with a real nginx in front (proxy_bind 127.0.0.9,
// X-Forwarded-For $proxy_add_x_forwarded_for), rules and rate limits see
// each client nginx names, not nginx; the access log names the client and
// nginx as its peer; a client that connects straight to the node cannot
// pass for another with a header of its own. Behind nginx's other
// classic setting, X-Real-IP $remote_addr, a listener with client_header
// reads that header alone.
func TestClientBehindNginx(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	web := startBackend(t, "web")
	lst, lst2 := freeAddr(t), freeAddr(t)
	var out logBuffer
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{AccessLog: &out})
	waitVersion(t, dp, c.apply(t, clientBehindSnapshot(web, lst, lst2)))
	n := startNginx(t, `listen %s;
        location / {
            proxy_pass http://`+lst+`;
            proxy_bind 127.0.0.9;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
        location /real/ {
            proxy_pass http://`+lst2+`;
            proxy_bind 127.0.0.9;
            proxy_set_header X-Real-IP $remote_addr;
            # Were X-Forwarded-For read, every client would be denied.
            proxy_set_header X-Forwarded-For 127.0.0.5;
        }`)
	through := func(ip, path string) ruleAnswer {
		return doFrom(t, ruleClient(ip), "GET", "http://"+n.addr+path, "app.test", "")
	}

	if got := through("127.0.0.5", "/"); got.status != 403 || got.body != "blocked\n" {
		t.Errorf("127.0.0.5 through nginx: %d %q, want 403 blocked", got.status, got.body)
	}
	passedBeforeLimit(t, 3, time.Minute, "slow down\n", func(int) ruleAnswer { return through("127.0.0.6", "/six") })
	// Were nginx the client, its count would be spent by now.
	if got := through("127.0.0.7", "/seven"); got.status != 200 || got.body != "web" {
		t.Errorf("127.0.0.7 through nginx, after 127.0.0.6 was limited: %d %q, want 200 from web", got.status, got.body)
	}

	// X-Real-IP names the client on listener real-ip, and X-Forwarded-For
	// does not.
	if got := through("127.0.0.5", "/real/five"); got.status != 403 || got.body != "blocked\n" {
		t.Errorf("127.0.0.5 through nginx's X-Real-IP: %d %q, want 403 blocked", got.status, got.body)
	}
	if got := through("127.0.0.6", "/real/six"); got.status != 200 || got.body != "web" {
		t.Errorf("127.0.0.6 through nginx's X-Real-IP, with X-Forwarded-For 127.0.0.5: %d %q, want 200 from web", got.status, got.body)
	}

	// straight sends a request to the node with c, with an
	// X-Forwarded-For of its own.
	straight := func(c *http.Client, path, xff string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+lst+path, nil)
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// Straight to the node, a header of the client's own is not read: its
	// claim to be 127.0.0.5 neither blocks it nor spends 127.0.0.7's count.
	direct := ruleClient("127.0.0.8")
	for i := range 3 {
		if resp := straight(direct, "/direct", "127.0.0.5"); resp.StatusCode != 200 {
			t.Errorf("request %d from 127.0.0.8 claiming 127.0.0.5: %d, want 200", i+1, resp.StatusCode)
		}
	}

	// HTTP/2 from the trusted peer reads the header as HTTP/1.1 does.
	h2 := ruleClient("127.0.0.9")
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2.Transport.(*http.Transport).Protocols = &p
	if resp := straight(h2, "/h2", "198.51.100.1, 127.0.0.5"); resp.ProtoMajor != 2 || resp.StatusCode != 403 {
		t.Errorf("h2c from the trusted peer for 127.0.0.5: HTTP/%d %d, want HTTP/2 403", resp.ProtoMajor, resp.StatusCode)
	}

	var limits struct {
		RateLimits []struct {
			Top []struct {
				Client string
				Rate   uint64
			}
		} `json:"rate_limits"`
	}
	body, err := get(http.DefaultClient, "http://"+dp.AdminAddr().String()+"/rate-limits?rule=per-client")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(body), &limits); err != nil {
		t.Fatalf("/rate-limits: %v\n%s", err, body)
	}
	rates := map[string]uint64{}
	for _, l := range limits.RateLimits {
		for _, c := range l.Top {
			rates[c.Client] = c.Rate
		}
	}
	if rates["127.0.0.6"] < 4 || rates["127.0.0.7"] != 1 || rates["127.0.0.8"] != 3 || rates["127.0.0.9"] != 0 {
		t.Errorf("/rate-limits counted %v; want 127.0.0.6 over 3, 127.0.0.7 1, 127.0.0.8 3 and nginx (127.0.0.9) none", rates)
	}

	flushLog(t, dp, direct, h2)
	seen := map[string]bool{}
	lines := out.lines(t)
	for _, l := range lines {
		path, client, peer := l["path"], l["client"], l["peer"]
		switch {
		case path == "/" && client == "127.0.0.5" && l["rule"] == "blocked" && strings.HasPrefix(fmt.Sprint(peer), "127.0.0.9:"),
			path == "/seven" && client == "127.0.0.7" && strings.HasPrefix(fmt.Sprint(peer), "127.0.0.9:"),
			path == "/real/five" && client == "127.0.0.5" && l["listener"] == "real-ip" && strings.HasPrefix(fmt.Sprint(peer), "127.0.0.9:"),
			path == "/h2" && client == "127.0.0.5" && l["proto"] == "HTTP/2.0" && strings.HasPrefix(fmt.Sprint(peer), "127.0.0.9:"),
			path == "/direct" && strings.HasPrefix(fmt.Sprint(client), "127.0.0.8:") && peer == nil:
			seen[fmt.Sprint(path)] = true
		}
	}
	for _, path := range []string{"/", "/seven", "/real/five", "/h2", "/direct"} {
		if !seen[path] {
			t.Errorf("no access log line for %s with its client and peer; the log: %v", path, lines)
		}
	}
}
