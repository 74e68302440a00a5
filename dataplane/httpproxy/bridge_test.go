package httpproxy

import (
	"cmp"
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// TestLoadHead: a head from another engine reads as the same request
// would over HTTP/1.1, and what Pick asks for shapes what is forwarded.
func TestLoadHead(t *testing.T) {
	var r Request
	ctx, cancel := context.WithCancel(context.Background())
	err := r.Load(&Head{
		Method: "GET", Target: "/a/b?x=1&y=2", Authority: "example.com:8443",
		Header: http.Header{"Cookie": {"SRV=s1; theme=dark"}, "X-Req": {"1"}, "Te": {"trailers"}},
		Client: netip.MustParseAddrPort("[::ffff:192.0.2.7]:4000"), TLS: true, SNI: []byte("example.com"),
		Context: ctx,
	})
	if err != nil {
		t.Fatal(err)
	}
	// A Director's wait (the node's cluster queue) ends with the stream.
	cancel()
	select {
	case <-r.Context().Done():
	default:
		t.Error("the Request's Context did not end with the Head's")
	}
	if string(r.Method()) != "GET" || string(r.URLPath()) != "/a/b" || string(r.Query("y")) != "2" || string(r.Host()) != "example.com:8443" {
		t.Errorf("view: %s %s %s %s", r.Method(), r.URLPath(), r.Query("y"), r.Host())
	}
	if r.ClientAddr() != netip.MustParseAddr("192.0.2.7") || r.ClientPort() != 4000 || !r.TLS() || string(r.ServerName()) != "example.com" {
		t.Errorf("client: %v %d %v %q", r.ClientAddr(), r.ClientPort(), r.TLS(), r.ServerName())
	}
	if string(r.Cookie("SRV")) != "s1" {
		t.Errorf("cookie: %q", r.Cookie("SRV"))
	}

	edits, err := NewHeaderEdits([]string{"X-Req"}, []Field{{"X-Set", "v"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RemoveCookie("SRV")
	r.EditRequest(edits)
	r.EditResponse(edits)
	r.RemoveResponseCookie("SRV")
	r.AddResponseField("Set-Cookie", []byte("SRV=s2; Path=/"))
	fwd := http.Header{}
	r.ForwardHeader(fwd)
	if got := fwd.Get("Cookie"); got != "theme=dark" {
		t.Errorf("forwarded Cookie %q, want the persistence cookie removed", got)
	}
	if fwd.Get("X-Req") != "" || fwd.Get("X-Set") != "v" || fwd.Get("Te") != "" || fwd.Get("Host") != "" {
		t.Errorf("forwarded fields: %v", fwd)
	}
	resp := http.Header{"Set-Cookie": {"SRV=evil", "other=1"}, "X-Req": {"gone"}}
	r.EditResponseHeader(resp)
	if got := strings.Join(resp["Set-Cookie"], "|"); got != "other=1|SRV=s2; Path=/" || resp.Get("X-Req") != "" || resp.Get("X-Set") != "v" {
		t.Errorf("edited response: %v", resp)
	}
}

// TestLoadHeadRefused: what HTTP/1.1 refuses is refused with its status.
func TestLoadHeadRefused(t *testing.T) {
	for _, h := range []Head{
		{Method: "CONNECT", Target: "example.com:443", Authority: "example.com:443"},
		{Method: "GET", Target: "/%zz", Authority: "a"},
		{Method: "GET", Target: "/", Authority: "a b"},
		{Method: "GET", Target: "/", Authority: "a", Header: http.Header{"Bad Name": {"x"}}},
		{Method: "GET", Target: "/"}, // HTTP/2 without an authority
		{Method: "GET", Target: "/", Authority: "a", Proto: "HTTP/0.9"},
		// What would forge fields: the request line and Host are written
		// as given.
		{Method: "GET", Target: "/", Authority: "\n0:"},
		{Method: "GET", Target: "/", Authority: "a\r\nX-Forged: 1"},
		{Method: "GET", Target: "/ HTTP/1.1\r\nX-Forged: 1\r\nY:", Authority: "a"},
		{Method: "GET / HTTP/1.1\r\nX-Forged: 1\r\nGET", Target: "/", Authority: "a"},
	} {
		var r Request
		err := r.Load(&h)
		if status, _ := StatusOf(err); err == nil || status < 400 {
			t.Errorf("%+v: %v (status %d), want refused", h, err, status)
		}
	}
}

// TestLoadHeadVersions: a head from an HTTP/1.x client is read in its
// version, as the HTTP/1.1 engine reads it: HTTP/1.0 may come without
// Host, and an HTTP/1.1 head with an empty one (net/http read the field)
// passes with it.
func TestLoadHeadVersions(t *testing.T) {
	for _, tc := range []struct {
		h     Head
		minor int
		host  string
	}{
		{Head{Method: "GET", Target: "/", Proto: "HTTP/1.0"}, 0, ""},
		{Head{Method: "GET", Target: "/", Authority: "a", Proto: "HTTP/1.0"}, 0, "a"},
		{Head{Method: "GET", Target: "/", Proto: "HTTP/1.1"}, 1, ""},
		{Head{Method: "GET", Target: "/", Authority: "a"}, 1, "a"},
	} {
		var r Request
		if err := r.Load(&tc.h); err != nil {
			t.Errorf("%+v: %v", tc.h, err)
			continue
		}
		if r.ProtoMinor() != tc.minor || string(r.Host()) != tc.host {
			t.Errorf("%+v: read as HTTP/1.%d with Host %q, want HTTP/1.%d with %q", tc.h, r.ProtoMinor(), r.Host(), tc.minor, tc.host)
		}
	}
}

// TestLoadHeadLimits: a head from another engine is held to the
// listener's limits as HTTP/1.1 heads are, with the same answers: 431 for
// a head too large or with too many fields, 414 for a target too long.
// The same heads pass without Limits (the defaults).
func TestLoadHeadLimits(t *testing.T) {
	cfg := (&Config{MaxHeaderBytes: 512, MaxHeaderCount: 4, MaxURILength: 64}).withDefaults()
	many := http.Header{}
	for _, k := range []string{"A", "B", "C", "D", "E"} {
		many.Set("X-"+k, "1")
	}
	for _, tc := range []struct {
		name   string
		h      Head
		status int
		text   string
	}{
		{"head too large", Head{Method: "GET", Target: "/", Authority: "a", Header: http.Header{"X-Big": {strings.Repeat("b", 512)}}}, 431, "request head too large"},
		{"too many fields", Head{Method: "GET", Target: "/", Authority: "a", Header: many}, 431, "too many header fields"},
		{"target too long", Head{Method: "GET", Target: "/" + strings.Repeat("u", 64), Authority: "a"}, 414, "request target too long"},
		{"target too long for the head too", Head{Method: "GET", Target: "/" + strings.Repeat("u", 600), Authority: "a"}, 414, "request target too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			if err := r.Load(&tc.h); err != nil {
				t.Fatalf("without limits: %v, want the defaults to pass it", err)
			}
			tc.h.Config = cfg
			status, text := StatusOf(r.Load(&tc.h))
			if status != tc.status || text != tc.text {
				t.Errorf("got %d %q, want %d %q", status, text, tc.status, tc.text)
			}
		})
	}
	var r Request
	ok := Head{Method: "GET", Target: "/" + strings.Repeat("u", 63), Authority: "a", Header: http.Header{"X-A": {"1"}, "X-B": {"2"}, "X-C": {"3"}}, Config: cfg}
	if err := r.Load(&ok); err != nil {
		t.Errorf("a head within the limits: %v", err)
	}
}

// FuzzLoadHead: any head another engine gives is either refused or read
// back as given (method, target, version and each field's first value).
func FuzzLoadHead(f *testing.F) {
	f.Add("GET", "/a?b=c", "example.com", "X-A", "1", "")
	f.Add("POST", "*", "h:80", "Cookie", "a=1; b=2", "HTTP/1.1")
	f.Add("OPTIONS", "*", "", "Te", "trailers", "HTTP/1.0")
	f.Fuzz(func(t *testing.T, method, target, authority, name, value, proto string) {
		var r Request
		err := r.Load(&Head{Method: method, Target: target, Authority: authority, Proto: proto, Header: http.Header{name: {value}}})
		if err != nil {
			return
		}
		if string(r.Method()) != method || string(r.Path()) != target {
			t.Fatalf("read back %q %q, want %q %q", r.Method(), r.Path(), method, target)
		}
		if want := cmp.Or(proto, "HTTP/1.1"); string(r.Proto()) != want {
			t.Fatalf("read back as %q, want %q", r.Proto(), want)
		}
		if !strings.EqualFold(name, "host") && string(r.Header(name)) != strings.Trim(value, " \t") {
			t.Fatalf("field %q read back %q, want %q", name, r.Header(name), value)
		}
	})
}
