package httpproxy

import (
	"bufio"
	"io"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

func TestNormalizePath(t *testing.T) {
	for _, tc := range []struct {
		in, want, merged string // merged: with merge ("" when the same as want)
	}{
		{"/", "/", ""},
		{"/admin", "/admin", ""},
		{"/x/../admin", "/admin", ""},
		{"/./admin", "/admin", ""},
		{"/%61dmin", "/admin", ""},
		{"/%2e%2e/admin", "/admin", ""},
		{"/a/%2E/b", "/a/b", ""},
		{"/a%2fb", "/a%2Fb", ""}, // an encoded slash is no separator
		{"/%7e%5F%2D", "/~_-", ""},
		{"/caf%c3%a9", "/caf%C3%A9", ""},
		{"/a/b/..", "/a/", ""},
		{"/a/b/.", "/a/b/", ""},
		{"/..", "/", ""},
		{"/../../a", "/a", ""},
		{"/a/./b/../../c/", "/c/", ""},
		{"/a/.b/..c/...", "/a/.b/..c/...", ""},
		{"//admin", "//admin", "/admin"},
		{"/a//b/..", "/a//", "/a/"},
		{"/a/..//admin", "//admin", "/admin"},
		{"/%2e/%2E%2e//x", "//x", "/x"},
	} {
		for _, merge := range []bool{false, true} {
			want := tc.want
			if merge && tc.merged != "" {
				want = tc.merged
			}
			p := []byte(tc.in)
			if got := string(p[:normalizePath(p, merge)]); got != want {
				t.Errorf("normalizePath(%q, merge %v) = %q, want %q", tc.in, merge, got, want)
			}
		}
	}
}

// TestCanonicalTarget: the parser makes the path of the request-target
// canonical, leaving the query, the authority of an absolute-form target
// and the asterisk-form alone; without the options it leaves the target
// as sent.
func TestCanonicalTarget(t *testing.T) {
	for _, tc := range []struct {
		target           string
		normalize, merge bool
		want             string
	}{
		{"/x/../admin?a=/../b", true, false, "/admin?a=/../b"},
		{"/%61dmin//x", true, false, "/admin//x"},
		{"/%61dmin//x", true, true, "/admin/x"},
		{"/%61dmin//x", false, true, "/%61dmin/x"},
		{"/x/../admin", false, false, "/x/../admin"},
		{"http://h.example/a/../b?q", true, false, "http://h.example/b?q"},
		{"http://h.example", true, true, "http://h.example"},
		{"http://h.example?q", true, true, "http://h.example?q"},
	} {
		var r Request
		lim := defaultLimits
		lim.normalize, lim.merge = tc.normalize, tc.merge
		head := "GET " + tc.target + " HTTP/1.1\r\nHost: h.example\r\n\r\n"
		if e := r.parseLimited([]byte(head), &lim); e != nil {
			t.Fatalf("%q: %v", tc.target, e.text)
		}
		if got := string(r.Path()); got != tc.want {
			t.Errorf("target %q (normalize %v, merge %v) = %q, want %q", tc.target, tc.normalize, tc.merge, got, tc.want)
		}
		if got := string(r.Proto()); got != "HTTP/1.1" {
			t.Errorf("target %q: proto %q", tc.target, got)
		}
	}
	var r Request
	lim := defaultLimits
	lim.normalize, lim.merge = true, true
	if e := r.parseLimited([]byte("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), &lim); e != nil || string(r.Path()) != "*" {
		t.Errorf("OPTIONS *: %v, target %q", e, r.Path())
	}
}

// TestNormalizedPathReachesTheEndpoint: with NormalizePath, the Director
// sees the canonical path, and the endpoint is sent it.
func TestNormalizedPathReachesTheEndpoint(t *testing.T) {
	addr, got := captureBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	d := &recordingDirector{ep: upstream.New("web", "a", addr)}
	p := startProxy(t, &Config{Director: d, NormalizePath: true, MergeSlashes: true})
	conn := p.dial()
	io.WriteString(conn, "GET /x/..//%61dmin?q=%61 HTTP/1.1\r\nHost: a\r\n\r\n")
	if r := readResponse(t, bufio.NewReader(conn), "GET"); r.code != 200 {
		t.Fatalf("got %s", r.status)
	}
	d.mu.Lock()
	if len(d.got) != 1 || !strings.HasPrefix(d.got[0], "GET /admin?q=%61 HTTP/1.1 ") {
		t.Errorf("the Director saw %q, want GET /admin?q=%%61", d.got)
	}
	d.mu.Unlock()
	if line, _, _ := strings.Cut(<-got, "\r\n"); line != "GET /admin?q=%61 HTTP/1.1" {
		t.Errorf("the endpoint got %q, want GET /admin?q=%%61", line)
	}
}

// FuzzNormalizePath: the result is no longer than the path, starts with
// '/', holds no dot-segment, and is its own normal form; with merge, it
// holds no "//".
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/x/../admin", "/%2e%2e//a/./b/..", "/a%2fb/%7E", "//..//"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, merge bool) {
		// A path as the request line's parser takes it: a '/' first,
		// target bytes, and each '%' followed by two hex digits.
		p := []byte("/")
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
				p = append(p, s[i:i+3]...)
				i += 2
			case c != '%' && c != '?' && isTargetByte[c]:
				p = append(p, c)
			}
		}
		in := string(p)
		n := normalizePath(p, merge)
		out := string(p[:n])
		if n > len(in) || !strings.HasPrefix(out, "/") {
			t.Fatalf("normalizePath(%q) = %q", in, out)
		}
		for _, seg := range strings.Split(out, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("normalizePath(%q) = %q, with a dot-segment", in, out)
			}
		}
		if merge && strings.Contains(out, "//") {
			t.Fatalf("normalizePath(%q, merge) = %q", in, out)
		}
		again := []byte(out)
		if twice := string(again[:normalizePath(again, merge)]); twice != out {
			t.Fatalf("normalizePath(%q) = %q, and of that %q", in, out, twice)
		}
	})
}
