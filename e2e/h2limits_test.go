package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// This file tests the listener's request limits on HTTP/2 clients:
// max_header_bytes, max_header_count, max_uri_length and
// max_request_body_bytes hold for them as for HTTP/1.1 ones.

// bodyBackend is an HTTP/1.1 and h2c server that counts the requests
// that reach it and the request body bytes it read, and answers with what
// it read.
type bodyBackend struct {
	addr     string
	requests atomic.Int64
	body     atomic.Int64
}

func startBodyBackend(t *testing.T) *bodyBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &bodyBackend{addr: ln.Addr().String()}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.requests.Add(1)
		buf := make([]byte, 1024)
		n := 0
		for {
			m, err := r.Body.Read(buf)
			n += m
			b.body.Add(int64(m))
			if err != nil {
				break
			}
		}
		fmt.Fprintf(w, "%s read %d", r.Proto, n)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// h2cClientFrom is an h2c (prior knowledge) client whose connections come
// from the loopback address ip, so that their records can be told apart.
func h2cClientFrom(ip string) (*http.Client, *http.Transport) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: testTimeout}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, DialContext: d.DialContext, DisableCompression: true}
	return &http.Client{Timeout: testTimeout, Transport: tr}, tr
}

// connRecord waits for the record of the connection from ip and returns it.
func connRecord(t *testing.T, c *cp, ip string) *sluicev1.ConnRecord {
	t.Helper()
	var rec *sluicev1.ConnRecord
	waitFor(t, "the record of the connection from "+ip, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		resp, err := c.api.ListConns(ctx, &sluicev1.ListConnsRequest{NodeId: "node-1", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetRecords() {
			if host, _, _ := net.SplitHostPort(r.GetClientAddress()); host == ip {
				rec = r
				return true
			}
		}
		return false
	})
	return rec
}

// TestHTTP2RequestLimits: an HTTP/2 request past the listener's limits is
// answered by the node as an HTTP/1.1 one is (431, 414, 413, same texts),
// before it reaches an endpoint; its connection ends and is recorded as
// BAD_REQUEST. A body of undeclared length that grows past
// max_request_body_bytes is cut, whether its endpoint speaks HTTP/1.1 or
// HTTP/2: the endpoint never reads a byte past the limit, the client gets
// 413. Requests within the limits go through.
func TestHTTP2RequestLimits(t *testing.T) {
	needCurlHTTP2(t)
	c := startCP(t, t.TempDir(), "")
	h1, h2 := startBodyBackend(t), startBodyBackend(t)
	dp := startNode(t, c.addr, "node-1")
	lst := freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: h1
    endpoints: [ { name: a, address: %s } ]
  - name: h2
    http2: true
    endpoints: [ { name: b, address: %s } ]
listeners:
  - name: web
    address: %s
    protocol: HTTP
    default_cluster: h1
    http: { h2c: true, max_header_bytes: 2048, max_header_count: 20, max_uri_length: 256, max_request_body_bytes: 16 }
    rules:
      - { match: { path: { prefix: /h2 } }, route: h2 }
`, h1.addr, h2.addr, lst)))
	base := "http://" + lst

	many := http.Header{}
	for i := range 20 {
		many.Set(fmt.Sprintf("X-F%d", i), "1") // with Host, 21 fields
	}
	for i, tc := range []struct {
		name   string
		path   string
		header http.Header
		body   string
		status int
		text   string
	}{
		{"head too large", "/", http.Header{"X-A": {strings.Repeat("a", 2048)}}, "", 431, "request head too large"},
		{"too many fields", "/", many, "", 431, "too many header fields"},
		{"target too long", "/" + strings.Repeat("u", 256), nil, "", 414, "request target too long"},
		{"declared body too large", "/h2", nil, strings.Repeat("b", 17), 413, "request body too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ip := fmt.Sprintf("127.0.6.%d", i+1)
			client, tr := h2cClientFrom(ip)
			method, body := "GET", io.Reader(nil)
			if tc.body != "" {
				method, body = "POST", strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(method, base+tc.path, body)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections()
			if resp.ProtoMajor != 2 || resp.StatusCode != tc.status || string(got) != tc.text+"\n" {
				t.Errorf("got HTTP/%d %d %q, want HTTP/2 %d %q", resp.ProtoMajor, resp.StatusCode, got, tc.status, tc.text+"\n")
			}
			if r := connRecord(t, c, ip); r.GetCloseReason() != sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST || r.GetEndpoint() != "" {
				t.Errorf("record %v, want BAD_REQUEST and no endpoint", r)
			}
		})
	}
	if n := h1.requests.Load() + h2.requests.Load(); n != 0 {
		t.Fatalf("%d refused requests reached an endpoint", n)
	}

	_, port, _ := net.SplitHostPort(lst)
	out, err := exec.Command("curl", "-sS", "--http2-prior-knowledge", "--max-time", "10",
		"-w", " %{http_version} %{http_code}", "-H", "X-A: "+strings.Repeat("a", 2048),
		"http://127.0.0.1:"+port+"/").CombinedOutput()
	if want := "request head too large\n 2 431"; err != nil || string(out) != want {
		t.Errorf("curl --http2-prior-knowledge with a big field: %q %v, want %q", out, err, want)
	}

	for i, tc := range []struct {
		name, path string
		b          *bodyBackend
		endpoint   string
	}{
		{"streamed body too large, HTTP/1.1 endpoint", "/", h1, "a"},
		{"streamed body too large, HTTP/2 endpoint", "/h2", h2, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ip := fmt.Sprintf("127.0.6.%d", 10+i)
			client, tr := h2cClientFrom(ip)
			pr, pw := io.Pipe()
			go func() {
				io.WriteString(pw, strings.Repeat("s", 16))
				// The rest only once the endpoint read what is within the
				// limit, so that the cut comes mid-stream.
				for deadline := time.Now().Add(testTimeout); tc.b.body.Load() < 16 && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
				io.WriteString(pw, "past the limit")
				pw.Close()
			}()
			req, _ := http.NewRequest("POST", base+tc.path, pr)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections()
			if resp.StatusCode != 413 || string(got) != "request body too large\n" {
				t.Errorf("got %d %q, want 413 \"request body too large\\n\"", resp.StatusCode, got)
			}
			if n := tc.b.body.Load(); n != 16 {
				t.Errorf("the endpoint read %d body bytes, want the 16 within the limit", n)
			}
			if r := connRecord(t, c, ip); r.GetCloseReason() != sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST || r.GetEndpoint() != tc.endpoint {
				t.Errorf("record %v, want BAD_REQUEST at endpoint %s", r, tc.endpoint)
			}
		})
	}

	// Within the limits: declared and streamed bodies of 16 bytes.
	h1.body.Store(0)
	client := h2Client(true)
	for _, body := range []io.Reader{strings.NewReader(strings.Repeat("b", 16)), io.MultiReader(strings.NewReader(strings.Repeat("b", 16)))} {
		resp, err := client.Post(base+"/", "text/plain", body)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != "HTTP/1.1 read 16" {
			t.Errorf("a body within the limit: %d %q, want 200 \"HTTP/1.1 read 16\"", resp.StatusCode, got)
		}
	}
}
