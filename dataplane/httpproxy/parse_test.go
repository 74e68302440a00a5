package httpproxy

import (
	"strings"
	"testing"
)

func parseHead(t testing.TB, s string) (*Request, *statusError) {
	t.Helper()
	b := []byte(s)
	end, _ := findHeadEnd(b, 0)
	if end < 0 {
		t.Fatalf("no head end in %q", s)
	}
	r := new(Request)
	return r, r.parse(b[:end])
}

func TestParseRequestAccepts(t *testing.T) {
	for _, tc := range []struct {
		name, in                    string
		method, target, host, proto string
		body                        uint8
		length                      int64
		closeConn                   bool
	}{
		{"minimal", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", "a", "HTTP/1.1", bodyNone, 0, false},
		{"LF only", "GET /x HTTP/1.1\nHost: a\n\n", "GET", "/x", "a", "HTTP/1.1", bodyNone, 0, false},
		{"content-length", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", "POST", "/p", "a", "HTTP/1.1", bodyLength, 12, false},
		{"identical CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\ncontent-length: 7\r\n\r\n", "POST", "/", "a", "HTTP/1.1", bodyLength, 7, false},
		{"chunked any case", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n", "POST", "/", "a", "HTTP/1.1", bodyChunked, 0, false},
		{"HTTP/1.0 closes", "GET / HTTP/1.0\r\n\r\n", "GET", "/", "", "HTTP/1.0", bodyNone, 0, true},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "GET", "/", "", "HTTP/1.0", bodyNone, 0, false},
		{"close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n", "GET", "/", "a", "HTTP/1.1", bodyNone, 0, true},
		{"absolute form", "GET HTTPS://b.example:8443/x?y HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "HTTPS://b.example:8443/x?y", "b.example:8443", "HTTP/1.1", bodyNone, 0, false},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS", "*", "a", "HTTP/1.1", bodyNone, 0, false},
		{"empty value", "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n", "GET", "/", "a", "HTTP/1.1", bodyNone, 0, false},
		{"obs-text value", "GET / HTTP/1.1\r\nHost: a\r\nX-U: caf\xc3\xa9\r\n\r\n", "GET", "/", "a", "HTTP/1.1", bodyNone, 0, false},
		{"HTTP/1.2 as 1.1", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", "GET", "/", "a", "HTTP/1.2", bodyNone, 0, false},
		{"host and port", "GET / HTTP/1.1\r\nHost: a-b_c.example~:8080\r\n\r\n", "GET", "/", "a-b_c.example~:8080", "HTTP/1.1", bodyNone, 0, false},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "/", "", "HTTP/1.1", bodyNone, 0, false},
		{"empty port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", "GET", "/", "a:", "HTTP/1.1", bodyNone, 0, false},
		{"IPv6 Host", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n", "GET", "/", "[2001:db8::1]:443", "HTTP/1.1", bodyNone, 0, false},
		{"sub-delims Host", "GET / HTTP/1.1\r\nHost: b!$&'()*+,;=\r\n\r\n", "GET", "/", "b!$&'()*+,;=", "HTTP/1.1", bodyNone, 0, false},
		{"absolute form, IPv6", "GET http://[::1]:81 HTTP/1.1\r\nHost: [::1]:81\r\n\r\n", "GET", "http://[::1]:81", "[::1]:81", "HTTP/1.1", bodyNone, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseHead(t, tc.in)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if string(r.Method()) != tc.method || string(r.Path()) != tc.target || string(r.Host()) != tc.host ||
				string(r.Proto()) != tc.proto || r.body != tc.body || r.contentLength != tc.length || r.closeConn != tc.closeConn {
				t.Errorf("got %s %s host=%q %s body=%d len=%d close=%v", r.Method(), r.Path(), r.Host(), r.Proto(), r.body, r.contentLength, r.closeConn)
			}
		})
	}
}

func TestRequestHeaderLookup(t *testing.T) {
	r, err := parseHead(t, "GET / HTTP/1.1\r\nHost: a\r\nX-Multi: one\r\nx-multi: two\r\nCookie: s=1\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"x-multi": "one", "X-MULTI": "one", "cookie": "s=1", "missing": "", "Hos": ""} {
		if got := string(r.Header(name)); got != want {
			t.Errorf("Header(%q) = %q, want %q", name, got, want)
		}
	}
	if r.Header("missing") != nil {
		t.Error("Header of a missing field is not nil")
	}
}

// The Host field of an absolute-form request reads as the target's
// authority, which is what the endpoint gets in it: a rule on the Host
// header cannot be passed with one host in the target and another in Host.
func TestAbsoluteFormHostHeader(t *testing.T) {
	r, err := parseHead(t, "GET http://admin.example/ HTTP/1.1\r\nhost: public.example\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	v, next := r.NextHeader("Host", 0)
	if got := string(r.Header("Host")); got != "admin.example" || string(v) != got || next < 0 {
		t.Errorf("Header(Host) = %q, NextHeader = %q, want admin.example", got, v)
	}
}

func TestFindHeadEndResumes(t *testing.T) {
	full := "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nNEXT"
	want, _ := findHeadEnd([]byte(full), 0)
	if want != len(full)-4 {
		t.Fatalf("end %d", want)
	}
	// Fed byte by byte, the resumed scan finds the same end.
	next := 0
	for i := 1; i <= len(full); i++ {
		end, n := findHeadEnd([]byte(full[:i]), next)
		if end > 0 {
			if end != want || i != want {
				t.Fatalf("found end %d at %d bytes, want %d", end, i, want)
			}
			return
		}
		next = n
	}
	t.Fatal("end not found")
}

func TestParseRequestDoesNotAllocate(t *testing.T) {
	head := []byte(benchHead)
	r := new(Request)
	allocs := testing.AllocsPerRun(100, func() {
		end, _ := findHeadEnd(head, 0)
		if err := r.parse(head[:end]); err != nil {
			t.Fatal(err)
		}
		_ = r.Header("user-agent")
	})
	if allocs != 0 {
		t.Errorf("parse allocates %v times per request", allocs)
	}
}

func TestResponseFraming(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		headReq  bool
		body     uint8
		length   int64
		reusable bool
		err      bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, bodyLength, 5, true, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, bodyChunked, -1, true, false},
		{"TE and CL: chunked, not reused", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false, bodyChunked, -1, false, false},
		{"chunked with a parameter refused", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", false, 0, 0, false, true},
		{"gzip coding refused", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, 0, 0, false, true},
		{"close-delimited", "HTTP/1.1 200 OK\r\n\r\n", false, bodyClose, -1, false, false},
		{"HEAD keeps length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, bodyNone, 5, true, false},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", false, bodyNone, -1, true, false},
		{"304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false, bodyNone, 9, true, false},
		{"100", "HTTP/1.1 100 Continue\r\n\r\n", false, bodyNone, -1, true, false},
		{"1.0 chunked refused", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0, 0, false, true},
		{"1.0 chunked, no body anyway", "HTTP/1.0 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", false, bodyNone, -1, false, false},
		{"1.0 closes", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, bodyLength, 1, false, false},
		{"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", false, bodyLength, 1, true, false},
		{"1.1 close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false, bodyLength, 1, false, false},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", false, bodyLength, 1, true, false},
		{"differing CL", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, 0, 0, false, true},
		{"bad status", "HTTP/1.1 20 OK\r\n\r\n", false, 0, 0, false, true},
		{"status 600", "HTTP/1.1 600 X\r\n\r\n", false, 0, 0, false, true},
		{"four-digit status", "HTTP/1.0 2000\n\n", false, 0, 0, false, true},
		{"status glued to its reason", "HTTP/1.1 200OK\r\n\r\n", false, 0, 0, false, true},
		{"no reason, LF only", "HTTP/1.1 204\n\n", false, bodyNone, -1, true, false},
		{"HTTP/2", "HTTP/2 200 OK\r\n\r\n", false, 0, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.in)
			end, _ := findHeadEnd(b, 0)
			var r response
			err := r.parse(b[:end], tc.headReq)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if err == nil && (r.body != tc.body || r.contentLength != tc.length || r.reusable != tc.reusable) {
				t.Errorf("body=%d len=%d reusable=%v", r.body, r.contentLength, r.reusable)
			}
		})
	}
}

func TestChunkDecoderStreams(t *testing.T) {
	in := "4;a=b\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\nContent-Length: 9\r\n\r\nNEXT"
	want := "4\r\nWiki\r\n5\r\npedia\r\ne\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n"
	for split := 0; split <= len(in); split++ {
		var d chunkDecoder
		out := make([]byte, 0, 1024)
		n1, out, err := d.decode([]byte(in[:split]), out, true)
		if err != nil {
			t.Fatalf("split %d: %v", split, err)
		}
		rest := in[n1:]
		n2, out, err := d.decode([]byte(rest), out, true)
		if err != nil || !d.done() {
			t.Fatalf("split %d: err %v done %v", split, err, d.done())
		}
		if string(out) != want || rest[n2:] != "NEXT" {
			t.Fatalf("split %d: out %q rest %q", split, out, rest[n2:])
		}
	}
	var d chunkDecoder
	_, out, _ := d.decode([]byte(in), make([]byte, 0, 64), false)
	if string(out) != "Wikipedia in\r\n\r\nchunks." {
		t.Errorf("decoded %q", out)
	}
	if !strings.HasPrefix(want, "4\r\n") {
		t.Fatal()
	}
}
