package node

import (
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestDenyAnswersWithErrorPage: a deny of 502, 503 or 504 with no body
// or content type of its own answers with the listener's error page of
// its status, as HAProxy's "http-request deny deny_status 503" answers
// with its errorfile or errorloc for 503; a deny with a body of its own,
// or of a status no page replaces, keeps its own answer. Over HTTP/1.1
// and HTTP/2 alike. A deny answered with a page's redirect is recorded as
// denied all the same.
func TestDenyAnswersWithErrorPage(t *testing.T) {
	n, rec := newRecordingNode(t)
	be := backend(t, "web1")
	page, loc := freeAddr(t), freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters: [{ name: web, endpoints: [{ name: e, address: "%s" }] }]
listeners:
  - name: page
    address: "%s"
    protocol: HTTP
    default_cluster: web
    http:
      error_pages:
        - { status: 503, body: "<h1>down for maintenance</h1>" }
        - { status: 502, body: "bad gateway page", content_type: text/plain }
    rules:
      - { match: { path: { prefix: /maint } }, deny: { status: 503 } }
      - { match: { path: { prefix: /own } }, deny: { status: 503, body: "own words" } }
      - { match: { path: { prefix: /typed } }, deny: { status: 503, content_type: application/json } }
      - { match: { path: { prefix: /forbidden } }, deny: {} }
      - { match: { path: { prefix: /gone } }, deny: { status: 504 } }
  - name: loc
    address: "%s"
    protocol: HTTP
    default_cluster: web
    http: { error_pages: [{ status: 503, redirect: "https://status.example.com/", redirect_code: 307 }] }
    rules: [{ match: { path: { prefix: /maint } }, deny: { status: 503 } }]
`, be, page, loc)); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	h1 := &http.Client{Timeout: testTimeout, Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	h2 := h2cClient(t, nil)
	h2.CheckRedirect = h1.CheckRedirect
	for _, tc := range []struct {
		url, status, contentType, location, body string
	}{
		{"http://" + page + "/maint", "503 Service Unavailable", "text/html; charset=utf-8", "", "<h1>down for maintenance</h1>"},
		{"http://" + page + "/own", "503 Service Unavailable", "text/plain; charset=utf-8", "", "own words"},
		{"http://" + page + "/typed", "503 Service Unavailable", "application/json", "", "request denied\n"},
		{"http://" + page + "/forbidden", "403 Forbidden", "text/plain; charset=utf-8", "", "request denied\n"},
		{"http://" + page + "/gone", "504 Gateway Timeout", "text/plain; charset=utf-8", "", "request denied\n"},
		{"http://" + page + "/", "200 OK", "text/plain; charset=utf-8", "", "web1"},
		{"http://" + loc + "/maint", "307 Temporary Redirect", "", "https://status.example.com/", ""},
	} {
		for _, client := range []*http.Client{h1, h2} {
			resp, err := client.Get(tc.url)
			if err != nil {
				t.Errorf("GET %s: %v", tc.url, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got := [4]string{resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("Location"), string(body)}
			if want := [4]string{tc.status, tc.contentType, tc.location, tc.body}; got != want {
				t.Errorf("GET %s over HTTP/%d: %q, want %q", tc.url, resp.ProtoMajor, got, want)
			}
		}
	}

	// Each client's connection to loc was denied once, through the
	// redirect.
	tr.CloseIdleConnections()
	h2.Transport.(*http.Transport).CloseIdleConnections()
	var loc2 []conntrack.ConnInfo
	waitUntil(t, "the records of both connections to loc", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		loc2 = loc2[:0]
		for _, ci := range rec.all {
			if ci.Listener == "loc" {
				loc2 = append(loc2, ci)
			}
		}
		return len(loc2) == 2
	})
	for _, ci := range loc2 {
		if !slices.Contains(ci.Failures.List(), sluicev1.CloseReason_CLOSE_REASON_DENIED) {
			t.Errorf("a connection denied through a redirect: failures %v, want DENIED among them", ci.Failures.List())
		}
	}
}
