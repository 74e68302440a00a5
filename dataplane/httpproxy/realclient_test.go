package httpproxy

import (
	"bufio"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// proxiesInFront are the trusted peers of the tests here: a private
// network and one IPv6 range.
var proxiesInFront = prefixes{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:1::/48")}

// clientOf parses a request head with fields and returns the client its
// forwarding headers name, as a trusted peer's, in style; "" for none.
func clientOf(t testing.TB, style ForwardedHeaders, fields string) string {
	t.Helper()
	return clientIn(t, style, "", fields)
}

// clientIn is clientOf with the client read from the fields named header
// (Config.ClientHeader), when not "".
func clientIn(t testing.TB, style ForwardedHeaders, header, fields string) string {
	t.Helper()
	r, err := ParseRequest([]byte("GET / HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n"))
	if err != nil {
		t.Fatalf("%q: %v", fields, err)
	}
	r.fwd.on, r.fwd.style, r.fwd.trusted = true, style, true
	c, ok := r.clientFromHeaders(proxiesInFront, header)
	if !ok {
		return ""
	}
	if c.Port() == 0 {
		return c.Addr().String()
	}
	return c.String()
}

// TestClientFromHeaders: the client is the rightmost address that no
// trusted proxy holds, and nothing a client writes left of it counts.
func TestClientFromHeaders(t *testing.T) {
	for _, tt := range []struct {
		name   string
		style  ForwardedHeaders
		fields string
		want   string
	}{
		{"one proxy", ForwardXForwarded, "X-Forwarded-For: 203.0.113.7\r\n", "203.0.113.7"},
		{"the client's own claim is left of it", ForwardXForwarded, "X-Forwarded-For: 1.1.1.1, 203.0.113.7\r\n", "203.0.113.7"},
		{"proxies in front of proxies", ForwardXForwarded, "X-Forwarded-For: 1.1.1.1, 203.0.113.7, 10.1.1.1,10.2.2.2\r\n", "203.0.113.7"},
		{"fields in order", ForwardXForwarded, "X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 203.0.113.7, 10.1.1.1\r\nx-forwarded-for: 10.2.2.2\r\n", "203.0.113.7"},
		{"every address a proxy's", ForwardXForwarded, "X-Forwarded-For: 10.9.9.9, 10.1.1.1\r\n", "10.9.9.9"},
		{"IPv6 and ports", ForwardXForwarded, "X-Forwarded-For: 2001:db8:2::5, [2001:db8:1::1]:443\r\n", "2001:db8:2::5"},
		{"IPv6 in brackets with a port", ForwardXForwarded, "X-Forwarded-For: [2001:db8:2::5]:8443\r\n", "[2001:db8:2::5]:8443"},
		{"IPv4 with a port", ForwardXForwarded, "X-Forwarded-For: 203.0.113.7:4711\r\n", "203.0.113.7:4711"},
		{"IPv4 mapped in IPv6", ForwardXForwarded, "X-Forwarded-For: ::ffff:203.0.113.7\r\n", "203.0.113.7"},
		{"empty elements", ForwardXForwarded, "X-Forwarded-For: , 203.0.113.7 ,, \r\n", "203.0.113.7"},
		{"unknown hides behind the proxy right of it", ForwardXForwarded, "X-Forwarded-For: 1.1.1.1, unknown, 10.1.1.1\r\n", "10.1.1.1"},
		{"the last entry is no address", ForwardXForwarded, "X-Forwarded-For: 203.0.113.7, garbage\r\n", ""},
		{"a zone is no address", ForwardXForwarded, "X-Forwarded-For: fe80::1%eth0\r\n", ""},
		{"a name is no address", ForwardXForwarded, "X-Forwarded-For: proxy.internal\r\n", ""},
		{"a bad port", ForwardXForwarded, "X-Forwarded-For: 203.0.113.7:99999\r\n", ""},
		{"brackets around IPv4", ForwardXForwarded, "X-Forwarded-For: [203.0.113.7]\r\n", ""},
		{"no header", ForwardXForwarded, "", ""},
		{"an empty header", ForwardXForwarded, "X-Forwarded-For: \r\n", ""},
		{"Forwarded is not this style's", ForwardXForwarded, "Forwarded: for=203.0.113.7\r\n", ""},
		{"a field Connection drops", ForwardXForwarded, "Connection: X-Forwarded-For\r\nX-Forwarded-For: 203.0.113.7\r\n", ""},

		{"Forwarded", ForwardRFC7239, "Forwarded: for=203.0.113.7;proto=https\r\n", "203.0.113.7"},
		{"Forwarded through proxies", ForwardRFC7239, "Forwarded: for=1.1.1.1, for=203.0.113.7;proto=http, for=10.1.1.1\r\n", "203.0.113.7"},
		{"Forwarded quoted IPv6 with a port", ForwardRFC7239, `Forwarded: for="[2001:db8:2::5]:4711";host=a, For="[2001:db8:1::9]"` + "\r\n", "[2001:db8:2::5]:4711"},
		{"Forwarded's quoted commas and semicolons", ForwardRFC7239, `Forwarded: for=203.0.113.7;host="a,b;c=d", for=10.1.1.1` + "\r\n", "203.0.113.7"},
		{"Forwarded spaces around pairs", ForwardRFC7239, "Forwarded: proto=http ; for=203.0.113.7 , for=10.1.1.1\r\n", "203.0.113.7"},
		{"Forwarded unknown", ForwardRFC7239, "Forwarded: for=1.1.1.1, for=unknown, for=10.1.1.1\r\n", "10.1.1.1"},
		{"Forwarded obfuscated", ForwardRFC7239, "Forwarded: for=_hidden\r\n", ""},
		{"Forwarded without for", ForwardRFC7239, "Forwarded: for=1.1.1.1, proto=https, for=10.1.1.1\r\n", "10.1.1.1"},
		{"Forwarded with two for", ForwardRFC7239, "Forwarded: for=1.1.1.1;for=10.3.3.3, for=10.1.1.1\r\n", "10.1.1.1"},
		{"Forwarded malformed", ForwardRFC7239, "Forwarded: for=1.1.1.1, for, for=10.1.1.1\r\n", "10.1.1.1"},
		{"Forwarded with an escape", ForwardRFC7239, `Forwarded: for="203.0.113\.7", for=10.1.1.1` + "\r\n", "10.1.1.1"},
		{"Forwarded unterminated", ForwardRFC7239, `Forwarded: for=10.1.1.1, for="203.0.113.7` + "\r\n", ""},
		{"Forwarded unquoted IPv6 is read", ForwardRFC7239, "Forwarded: for=[2001:db8:2::5]\r\n", "2001:db8:2::5"},
		{"X-Forwarded-For is not this style's", ForwardRFC7239, "X-Forwarded-For: 203.0.113.7\r\n", ""},

		{"both: X-Forwarded-For first", ForwardBoth, "Forwarded: for=198.51.100.1\r\nX-Forwarded-For: 203.0.113.7\r\n", "203.0.113.7"},
		{"both: Forwarded without X-Forwarded-For", ForwardBoth, "Forwarded: for=198.51.100.1\r\n", "198.51.100.1"},
		{"none writes none, and reads none", ForwardNone, "X-Forwarded-For: 203.0.113.7\r\n", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := clientOf(t, tt.style, tt.fields); got != tt.want {
				t.Errorf("client of %q = %q, want %q", tt.fields, got, tt.want)
			}
		})
	}
}

// TestClientFromAHeaderOfItsOwn: with Config.ClientHeader, the client is
// read from the fields of that name alone, in any case and whatever the
// style, walked as X-Forwarded-For is.
func TestClientFromAHeaderOfItsOwn(t *testing.T) {
	for _, tt := range []struct {
		name, header string
		style        ForwardedHeaders
		fields       string
		want         string
	}{
		{"one address", "X-Real-IP", ForwardXForwarded, "X-Real-IP: 203.0.113.7\r\n", "203.0.113.7"},
		{"its name in any case", "CF-Connecting-IP", ForwardXForwarded, "cf-connecting-ip: 2001:db8:2::5\r\n", "2001:db8:2::5"},
		{"whatever the style", "X-Real-IP", ForwardNone, "X-Real-IP: 203.0.113.7\r\n", "203.0.113.7"},
		{"X-Forwarded-For is not read", "X-Real-IP", ForwardXForwarded, "X-Forwarded-For: 198.51.100.1\r\nX-Real-IP: 203.0.113.7\r\n", "203.0.113.7"},
		{"without the field, no client", "X-Real-IP", ForwardXForwarded, "X-Forwarded-For: 198.51.100.1\r\n", ""},
		{"a list, walked from its right", "True-Client-IP", ForwardRFC7239, "True-Client-IP: 1.1.1.1, 203.0.113.7, 10.1.1.1\r\n", "203.0.113.7"},
		{"fields in order", "X-Real-IP", ForwardXForwarded, "X-Real-IP: 203.0.113.7\r\nX-Other: 1\r\nx-real-ip: 10.1.1.1\r\n", "203.0.113.7"},
		{"not an address", "X-Real-IP", ForwardXForwarded, "X-Real-IP: unknown\r\n", ""},
		{"a name that only starts the same", "X-Real-IP", ForwardXForwarded, "X-Real-IP-Too: 203.0.113.7\r\n", ""},
		{"a field Connection drops", "X-Real-IP", ForwardXForwarded, "Connection: x-real-ip\r\nX-Real-IP: 203.0.113.7\r\n", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := clientIn(t, tt.style, tt.header, tt.fields); got != tt.want {
				t.Errorf("client of %q from %s = %q, want %q", tt.fields, tt.header, got, tt.want)
			}
		})
	}
}

// clientDirector answers every pick with ep and records the client each
// request had.
type clientDirector struct {
	ep      *upstream.Endpoint
	clients chan string
}

func (d *clientDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	d.clients <- netip.AddrPortFrom(r.ClientAddr(), r.ClientPort()).String() + " peer " + r.PeerAddr().String()
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

// TestClientFromHeadersThroughTheProxy: over a real connection from a
// trusted peer, the Director sees the client each request's
// X-Forwarded-For names (a balancer in front sends many clients' requests
// over one connection), while the endpoint's X-Forwarded-For gets the
// peer appended, as without the option. From a peer that is not trusted,
// the header is not read.
func TestClientFromHeadersThroughTheProxy(t *testing.T) {
	type request struct{ xff, client, sent string }
	for _, tt := range []struct {
		name     string
		trusted  prefixes
		requests []request
	}{
		{"trusted peer", prefixes{netip.MustParsePrefix("127.0.0.0/8")}, []request{
			{"1.1.1.1, 203.0.113.7", "203.0.113.7:0 peer 127.0.0.1", "1.1.1.1, 203.0.113.7, 127.0.0.1"},
			{"198.51.100.2:4711", "198.51.100.2:4711 peer 127.0.0.1", "198.51.100.2:4711, 127.0.0.1"},
			{"", "127.0.0.1:", "127.0.0.1"},
		}},
		{"peer not trusted", prefixes{netip.MustParsePrefix("10.0.0.0/8")}, []request{
			{"1.1.1.1, 203.0.113.7", "127.0.0.1:", "127.0.0.1"},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, heads := captureBackend(t, "HTTP/1.1 204 No Content\r\n\r\n")
			d := &clientDirector{ep: upstream.New("web", "b1", addr), clients: make(chan string, 1)}
			p := startProxy(t, &Config{Director: d, TrustedPeers: tt.trusted, ClientFromHeaders: true})
			conn := p.dial()
			br := bufio.NewReader(conn)
			for _, rq := range tt.requests {
				fields := ""
				if rq.xff != "" {
					fields = "X-Forwarded-For: " + rq.xff + "\r\n"
				}
				io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a\r\n"+fields+"\r\n")
				head := <-heads
				readResponse(t, br, "GET")
				if got := <-d.clients; !strings.HasPrefix(got, rq.client) {
					t.Errorf("X-Forwarded-For %q: the Director saw client %s, want %s…", rq.xff, got, rq.client)
				}
				r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
				if err != nil {
					t.Fatalf("the endpoint got %q: %v", head, err)
				}
				if got := r.Header.Get("X-Forwarded-For"); got != rq.sent {
					t.Errorf("X-Forwarded-For %q: the endpoint got %q, want %q", rq.xff, got, rq.sent)
				}
			}
		})
	}
}

// FuzzClientFromHeaders: whatever a proxy in front passes on, the walk
// ends, and over X-Forwarded-For it gives what reading the list from the
// right gives. IPv4 addresses read as netip reads them.
func FuzzClientFromHeaders(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "1.2.3.04", "1.2.3.256", "1..2.3", "1.2.3.4.", "0.0.0.0", "1.1.1.1, 203.0.113.7, 10.1.1.1", "unknown, 10.1.1.1", "[2001:db8::1]:80, ,",
		`for=1.1.1.1;proto=http, for="[2001:db8:1::1]:4", for=unknown`, `for="a\"b,c", for=10.0.0.1`, `for="`, "for=;,=,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		a, ok := parseIPv4([]byte(v))
		if want, err := netip.ParseAddr(v); ok != (err == nil && want.Is4()) || ok && a != want {
			t.Errorf("parseIPv4(%q) = %v, %v; netip.ParseAddr: %v, %v", v, a, ok, want, err)
		}
		if strings.ContainsAny(v, "\r\n\x00") || !isValue(v) {
			return
		}
		xff := clientOf(t, ForwardXForwarded, "X-Forwarded-For: "+v+"\r\n")
		if want := clientFromTheRight(v); xff != want {
			t.Errorf("X-Forwarded-For %q: client %q, read from the right %q", v, xff, want)
		}
		// A header of its own is read as X-Forwarded-For is.
		if own := clientIn(t, ForwardRFC7239, "X-Real-IP", "X-Forwarded-For: 192.0.2.9\r\nX-Real-IP: "+v+"\r\n"); own != xff {
			t.Errorf("X-Real-IP %q: client %q, from X-Forwarded-For %q", v, own, xff)
		}
		// An element names its client with for= only.
		if fwd := clientOf(t, ForwardRFC7239, "Forwarded: "+v+"\r\n"); fwd != "" && !strings.Contains(strings.ToLower(v), "for") {
			t.Errorf("Forwarded %q: client %q, without a for=", v, fwd)
		}
	})
}

// clientFromTheRight reads an X-Forwarded-For value as the walk is
// specified: from the right, past trusted proxies, stopping at the first
// entry that is not an address.
func clientFromTheRight(v string) string {
	var entries []string
	for e := range strings.SplitSeq(v, ",") {
		if e = strings.Trim(e, " \t"); e != "" {
			entries = append(entries, e)
		}
	}
	client := ""
	for i := len(entries) - 1; i >= 0; i-- {
		a, ok := parseNode([]byte(entries[i]))
		if !ok {
			break
		}
		if client = a.String(); a.Port() == 0 {
			client = a.Addr().String()
		}
		if !proxiesInFront.Contains(a.Addr()) {
			break
		}
	}
	return client
}
