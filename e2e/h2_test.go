package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// h2Client is a Go HTTP client that speaks only HTTP/2: over TLS (ALPN
// h2, certificate not verified) or, with h2c, cleartext with prior
// knowledge.
func h2Client(h2c bool) *http.Client {
	var p http.Protocols
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP2(true)
	}
	return &http.Client{
		Timeout: testTimeout,
		Transport: &http.Transport{
			Protocols:          &p,
			TLSClientConfig:    &tls.Config{InsecureSkipVerify: true},
			DisableCompression: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// h2Answer is what an HTTP/2 client saw.
type h2Answer struct {
	proto  int
	status int
	body   string
	header http.Header
}

func h2Get(t *testing.T, client *http.Client, url string) h2Answer {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return h2Answer{resp.ProtoMajor, resp.StatusCode, string(body), resp.Header}
}

// abClusters is the YAML of clusters a and b, one endpoint each.
func abClusters(a, b *ruleBackend) string {
	return fmt.Sprintf(`
clusters:
  - name: a
    endpoints: [ { name: a, address: %s } ]
  - name: b
    endpoints: [ { name: b, address: %s } ]
`, a.addr, b.addr)
}

// tlsYAML is a listener's tls block with an inline certificate, indented
// to follow a listener's other keys.
func tlsYAML(cert, key string) string {
	return fmt.Sprintf(`    tls:
      certificates:
        - cert_pem: |
%s
          key_pem: |
%s
`, indent(cert, "            "), indent(key, "            "))
}

// needCurlHTTP2 fails the test unless curl is there and speaks HTTP/2.
func needCurlHTTP2(t *testing.T) {
	t.Helper()
	out, err := exec.Command("curl", "--version").Output()
	if err != nil {
		t.Fatalf("curl is needed for this test (apt-get install curl): %v", err)
	}
	if !strings.Contains(string(out), "HTTP2") {
		t.Fatalf("this curl does not speak HTTP/2: %s", out)
	}
}

// TestHTTP2TLSListener: an HTTPS listener offers h2 in ALPN by default. A
// Go HTTP/2 client and curl --http2 get their answers over HTTP/2 from the
// right backend, and the listener's rules hold for them as for HTTP/1.1:
// a deny is answered 403 by the proxy, a route sends /b to another
// cluster, header edits apply both ways. HTTP/1.1 clients are still
// served on the same listener.
func TestHTTP2TLSListener(t *testing.T) {
	needCurlHTTP2(t)
	c := startCP(t, t.TempDir(), "")
	a, b := startRuleBackend(t, "a"), startRuleBackend(t, "b")
	dp := startNode(t, c.addr, "node-1")
	listen := freeAddr(t)
	cert, key := selfSigned(t, "h2.example")
	waitVersion(t, dp, c.apply(t, abClusters(a, b)+fmt.Sprintf(`
listeners:
  - name: https
    address: %s
    protocol: HTTP
    default_cluster: a
    rules:
      - { match: { path: { prefix: /admin } }, deny: {} }
      - { match: { path: { prefix: /b } }, route: b }
      - response_headers: { set: { X-Served-By: sluice }, remove: [Server] }
%s`, listen, tlsYAML(cert, key))))

	client := h2Client(false)
	base := "https://" + listen
	if got := h2Get(t, client, base+"/"); got.proto != 2 || got.status != 200 || got.body != "a" {
		t.Errorf("GET / over h2: HTTP/%d %d %q, want HTTP/2 200 \"a\"", got.proto, got.status, got.body)
	} else if got.header.Get("X-Served-By") != "sluice" || got.header.Get("Server") != "" {
		t.Errorf("response edits over h2: X-Served-By %q, Server %q", got.header.Get("X-Served-By"), got.header.Get("Server"))
	}
	if got := h2Get(t, client, base+"/b/x"); got.status != 200 || got.body != "b" {
		t.Errorf("GET /b/x over h2: %d %q, want the route to cluster b", got.status, got.body)
	}
	hitsA, hitsB := a.hits.Load(), b.hits.Load()
	if got := h2Get(t, client, base+"/admin"); got.proto != 2 || got.status != 403 || got.body != "request denied\n" {
		t.Errorf("GET /admin over h2: HTTP/%d %d %q, want HTTP/2 403 \"request denied\\n\"", got.proto, got.status, got.body)
	}
	if a.hits.Load() != hitsA || b.hits.Load() != hitsB {
		t.Errorf("a denied request reached a backend")
	}

	_, port, _ := net.SplitHostPort(listen)
	curl := func(path string) string {
		t.Helper()
		out, err := exec.Command("curl", "-sS", "-k", "--http2", "--max-time", "10",
			"-o", "/dev/stdout", "-w", " %{http_version} %{http_code}",
			"--resolve", "h2.example:"+port+":127.0.0.1", "https://h2.example:"+port+path).CombinedOutput()
		if err != nil {
			t.Fatalf("curl --http2 %s: %v: %s", path, err, out)
		}
		return string(out)
	}
	for path, want := range map[string]string{
		"/":      "a 2 200",
		"/b":     "b 2 200",
		"/admin": "request denied\n 2 403",
	} {
		if got := curl(path); got != want {
			t.Errorf("curl --http2 %s: %q, want %q", path, got, want)
		}
	}

	// HTTP/1.1 on the same listener.
	h1 := &http.Client{Timeout: testTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if got := h2Get(t, h1, base+"/b"); got.proto != 1 || got.body != "b" {
		t.Errorf("HTTP/1.1 client: HTTP/%d %q", got.proto, got.body)
	}
}

// TestH2CListener: a plain listener with http.h2c serves HTTP/2 with prior
// knowledge (curl --http2-prior-knowledge, a Go h2c client) and HTTP/1.1
// on the same port, both through its rules.
func TestH2CListener(t *testing.T) {
	needCurlHTTP2(t)
	c := startCP(t, t.TempDir(), "")
	a, b := startRuleBackend(t, "a"), startRuleBackend(t, "b")
	dp := startNode(t, c.addr, "node-1")
	listen := freeAddr(t)
	waitVersion(t, dp, c.apply(t, abClusters(a, b)+fmt.Sprintf(`
listeners:
  - name: h2c
    address: %s
    protocol: HTTP
    default_cluster: a
    http: { h2c: true }
    rules:
      - { match: { path: { prefix: /admin } }, deny: {} }
      - { match: { path: { prefix: /b } }, route: b }
`, listen)))

	curl := func(args ...string) string {
		t.Helper()
		args = append([]string{"-sS", "--max-time", "10", "-w", " %{http_version} %{http_code}"}, args...)
		out, err := exec.Command("curl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	base := "http://" + listen
	for _, tc := range []struct{ flag, path, want string }{
		{"--http2-prior-knowledge", "/", "a 2 200"},
		{"--http2-prior-knowledge", "/b", "b 2 200"},
		{"--http2-prior-knowledge", "/admin", "request denied\n 2 403"},
		{"--http1.1", "/", "a 1.1 200"},
		{"--http1.1", "/b", "b 1.1 200"},
		{"--http1.1", "/admin", "request denied\n 1.1 403"},
	} {
		if got := curl(tc.flag, base+tc.path); got != tc.want {
			t.Errorf("curl %s %s: %q, want %q", tc.flag, tc.path, got, tc.want)
		}
	}
	if got := h2Get(t, h2Client(true), base+"/b"); got.proto != 2 || got.body != "b" {
		t.Errorf("Go h2c client: HTTP/%d %q", got.proto, got.body)
	}
}

// startH2CBackend is an HTTP server that speaks only h2c. It answers with
// the protocol it was spoken to in, the X-Forwarded-For it got, and in a
// trailer ("Echo") the request trailer "Ping" it read after the body.
func startH2CBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "Echo")
		fmt.Fprintf(w, "%s xff=%s body=%s", r.Proto, r.Header.Get("X-Forwarded-For"), body)
		w.Header().Set("Echo", r.Trailer.Get("Ping"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestHTTP2Translation: a cluster with http2 is reached over h2c whatever
// the client speaks. An HTTP/1.1 client's request arrives as HTTP/2 (the
// listener hands its HTTP/1.1 connections to the HTTP/2 engine too), with
// X-Forwarded-For; trailers cross the proxy both ways, for an HTTP/2
// client and, chunked, for an HTTP/1.1 one.
func TestHTTP2Translation(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	backend := startH2CBackend(t)
	dp := startNode(t, c.addr, "node-1")
	listen := freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: h2
    http2: true
    endpoints: [ { name: h2, address: %s } ]
listeners:
  - name: web
    address: %s
    protocol: HTTP
    default_cluster: h2
    http: { h2c: true }
`, backend, listen)))

	for _, tc := range []struct {
		name   string
		client *http.Client
		proto  int
	}{
		{"HTTP/1.1 client", &http.Client{Timeout: testTimeout}, 1},
		{"h2c client", h2Client(true), 2},
	} {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", "http://"+listen+"/echo", pr)
		req.Trailer = http.Header{"Ping": nil}
		go func() {
			io.WriteString(pw, "hello")
			req.Trailer.Set("Ping", "pong")
			pw.Close()
		}()
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: body: %v", tc.name, err)
		}
		if want := "HTTP/2.0 xff=127.0.0.1 body=hello"; resp.ProtoMajor != tc.proto || string(body) != want {
			t.Errorf("%s: HTTP/%d %q, want HTTP/%d %q", tc.name, resp.ProtoMajor, body, tc.proto, want)
		}
		if got := resp.Trailer.Get("Echo"); got != "pong" {
			t.Errorf("%s: response trailer Echo %q, want the request trailer \"pong\" echoed", tc.name, got)
		}
	}
}

// TestHTTP2EngineAddsNothing: on a listener served by the HTTP/2 engine
// (its rules may route to an http2 cluster), an endpoint's response that
// has no Content-Type and no Date reaches the client without them, also
// when a rule removes them, to an HTTP/1.1 and an h2c client: net/http
// would guess text/html from the body and write its own Date.
func TestHTTP2EngineAddsNothing(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	untyped := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"], w.Header()["Date"] = nil, nil
		io.WriteString(w, "<html><script>alert(1)</script></html>")
	})}
	go untyped.Serve(ln)
	t.Cleanup(func() { untyped.Close() })
	dp := startNode(t, c.addr, "node-1")
	listen := freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: files
    endpoints: [ { name: f, address: %s } ]
  - name: h2
    http2: true
    endpoints: [ { name: h2, address: %s } ]
listeners:
  - name: web
    address: %s
    protocol: HTTP
    default_cluster: files
    http: { h2c: true }
    rules:
      - { match: { path: { prefix: [/grpc/] } }, route: h2 }
      - { match: { path: { prefix: [/edited] } }, response_headers: { remove: [Content-Type, Date] } }
`, ln.Addr(), freeAddr(t), listen)))
	for _, client := range []*http.Client{{Timeout: testTimeout}, h2Client(true)} {
		for _, path := range []string{"/upload", "/edited"} {
			resp, err := client.Get("http://" + listen + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if ct, date := resp.Header.Values("Content-Type"), resp.Header.Values("Date"); resp.StatusCode != 200 || len(ct) > 0 || len(date) > 0 {
				t.Errorf("HTTP/%d %s: %d, Content-Type %q, Date %q; want 200 with neither", resp.ProtoMajor, path, resp.StatusCode, ct, date)
			}
		}
	}
}
