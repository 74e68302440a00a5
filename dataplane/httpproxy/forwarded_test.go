package httpproxy

import (
	"bufio"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// prefixes is a set of Peers in a list.
type prefixes []netip.Prefix

func (ps prefixes) Contains(a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// spoofing is a request from a client that claims to forward for someone
// else, with the names in several cases and repeated.
const spoofing = "GET / HTTP/1.1\r\nHost: app.test:8080\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8\r\n" +
	"X-FORWARDED-PROTO: https\r\nX-Forwarded-Host: evil.test\r\nForwarded: for=1.2.3.4;proto=https\r\n\r\n"

// forwardedFields sends req through a proxy with cfg and returns the
// forwarding fields the endpoint got, by canonical name, in order.
func forwardedFields(t *testing.T, cfg Config, req string) http.Header {
	t.Helper()
	addr, heads := captureBackend(t, "HTTP/1.1 204 No Content\r\n\r\n")
	ep := upstream.New("web", "b1", addr)
	if cfg.Director == nil {
		cfg.Director = &rrDirector{eps: []*upstream.Endpoint{ep}}
	} else if d, ok := cfg.Director.(*editDirector); ok {
		d.ep = ep
	}
	p := startProxy(t, &cfg)
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, req)
	head := <-heads
	readResponse(t, br, "GET")
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
	if err != nil {
		t.Fatalf("the endpoint got %q: %v", head, err)
	}
	got := http.Header{}
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"} {
		if v := r.Header.Values(k); v != nil {
			got[k] = v
		}
	}
	return got
}

func checkFields(t *testing.T, got http.Header, want map[string][]string) {
	t.Helper()
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("%s: endpoint got %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: endpoint got %q, want none", k, got[k])
		}
	}
}

// From a peer that is not trusted, whatever the client sent in the headers
// of the style is replaced: the endpoint sees only the real address.
func TestForwardingFromUntrustedPeer(t *testing.T) {
	t.Run("X_FORWARDED", func(t *testing.T) {
		checkFields(t, forwardedFields(t, Config{}, spoofing), map[string][]string{
			"X-Forwarded-For":   {"127.0.0.1"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"app.test:8080"},
			"Forwarded":         {"for=1.2.3.4;proto=https"}, // not this style's: untouched
		})
	})
	t.Run("RFC7239", func(t *testing.T) {
		checkFields(t, forwardedFields(t, Config{Forwarded: ForwardRFC7239}, spoofing), map[string][]string{
			"X-Forwarded-For":   {"1.2.3.4", "5.6.7.8"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"evil.test"},
			"Forwarded":         {`for=127.0.0.1;proto=http;host="app.test:8080"`},
		})
	})
	t.Run("BOTH", func(t *testing.T) {
		// Trusting another network does not trust this peer.
		cfg := Config{Forwarded: ForwardBoth, TrustedPeers: prefixes{netip.MustParsePrefix("10.0.0.0/8")}}
		checkFields(t, forwardedFields(t, cfg, spoofing), map[string][]string{
			"X-Forwarded-For":   {"127.0.0.1"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"app.test:8080"},
			"Forwarded":         {`for=127.0.0.1;proto=http;host="app.test:8080"`},
		})
	})
	t.Run("NONE", func(t *testing.T) {
		checkFields(t, forwardedFields(t, Config{Forwarded: ForwardNone}, spoofing), map[string][]string{
			"X-Forwarded-For":   {"1.2.3.4", "5.6.7.8"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"evil.test"},
			"Forwarded":         {"for=1.2.3.4;proto=https"},
		})
	})
}

// From a trusted peer (a proxy in front), the client address is appended to
// what it sent, and its proto and host are kept.
func TestForwardingFromTrustedPeer(t *testing.T) {
	trusted := prefixes{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	checkFields(t, forwardedFields(t, Config{Forwarded: ForwardBoth, TrustedPeers: trusted}, spoofing), map[string][]string{
		"X-Forwarded-For":   {"1.2.3.4", "5.6.7.8, 127.0.0.1"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"evil.test"},
		"Forwarded":         {`for=1.2.3.4;proto=https, for=127.0.0.1;proto=http;host="app.test:8080"`},
	})
	// A trusted peer that sent none gets them written.
	checkFields(t, forwardedFields(t, Config{TrustedPeers: trusted}, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), map[string][]string{
		"X-Forwarded-For":   {"127.0.0.1"},
		"X-Forwarded-Proto": {"http"},
		"X-Forwarded-Host":  {"a"},
	})
	// Connection names what ends at the peer: it is not forwarded.
	checkFields(t, forwardedFields(t, Config{TrustedPeers: trusted}, "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n"), map[string][]string{
		"X-Forwarded-For":   {"127.0.0.1"},
		"X-Forwarded-Proto": {"http"},
		"X-Forwarded-Host":  {"a"},
	})
}

// Header edits of rules run after the forwarding headers are written, so a
// rule can remove or replace them.
func TestForwardingHeadersYieldToEdits(t *testing.T) {
	d := &editDirector{req: []*HeaderEdits{mustEdits(t, []string{"X-Forwarded-Host"}, []Field{{"X-Forwarded-For", "rule"}}, nil)}}
	checkFields(t, forwardedFields(t, Config{Director: d}, spoofing), map[string][]string{
		"X-Forwarded-For":   {"rule"},
		"X-Forwarded-Proto": {"http"},
		"Forwarded":         {"for=1.2.3.4;proto=https"},
	})
}

func TestForwardedElement(t *testing.T) {
	for _, tc := range []struct {
		client, host string
		tls          bool
		want         string
	}{
		{"192.0.2.60", "example.com", false, "for=192.0.2.60;proto=http;host=example.com"},
		{"2001:db8:cafe::17", "example.com:8443", true, `for="[2001:db8:cafe::17]";proto=https;host="example.com:8443"`},
		{"::ffff:192.0.2.1", "[::1]:80", false, `for=192.0.2.1;proto=http;host="[::1]:80"`},
		{"fe80::1%eth0", `a"b`, false, `for="[fe80::1]";proto=http;host="a\"b"`},
		{"", "", false, "for=unknown;proto=http"},
	} {
		r := &Request{tls: tc.tls, head: []byte(tc.host), host: span{0, uint16(len(tc.host))}}
		if tc.client != "" {
			r.peer = netip.MustParseAddr(tc.client)
		}
		if got := string(appendForwardedElement(nil, r)); got != tc.want {
			t.Errorf("client %s host %s: %s, want %s", tc.client, tc.host, got, tc.want)
		}
	}
}

// Writing the forwarding headers, trusted or not, costs no allocation.
func TestForwardingDoesNotAllocate(t *testing.T) {
	x := exchangePool.New().(*exchange)
	out := make([]byte, 0, wbSize)
	head := []byte(spoofing)
	for _, trusted := range []bool{false, true} {
		run := func() {
			if err := x.req.parse(head); err != nil {
				t.Fatal(err)
			}
			x.req.peer = netip.MustParseAddr("2001:db8::1")
			x.req.fwd.on, x.req.fwd.style, x.req.fwd.trusted = true, ForwardBoth, trusted
			out = appendRequestHead(out[:0], &x.req, "10.0.0.1:80")
		}
		if n := testing.AllocsPerRun(100, run); n != 0 {
			t.Errorf("trusted=%v: %v allocations per request", trusted, n)
		}
		if !strings.Contains(string(out), `for="[2001:db8::1]"`) {
			t.Errorf("trusted=%v: forwarded %q", trusted, out)
		}
	}
}
