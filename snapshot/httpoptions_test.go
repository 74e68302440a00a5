package snapshot

import (
	"strings"
	"testing"
)

func TestValidateHTTPOptions(t *testing.T) {
	listener := func(http string) []string {
		return []string{`{name: l, address: "127.0.0.1:8080", protocol: HTTP, default_cluster: web, http: ` + http + `}`}
	}
	for _, tt := range []struct {
		name string
		http string
		want []string
	}{
		{
			name: "every option set",
			http: `{forwarding: {style: BOTH, trusted_peers: ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:10.0.0.0/104"], client_from_headers: true}, ` +
				`max_header_bytes: 65536, max_header_count: 500, max_uri_length: 4096, max_request_body_bytes: 10485760, tunnel_idle_timeout: 30m}`,
		},
		{
			name: "bad peers",
			http: `{forwarding: {trusted_peers: ["10.0.0.0/33", "fe80::1%eth0", "proxy.internal", "10.1.2.3/8", "10.0.0.1"]}}`,
			want: []string{
				`listeners[0].http.forwarding.trusted_peers[0]: "10.0.0.0/33" is not an IP address or a CIDR prefix like 10.0.0.0/8`,
				`listeners[0].http.forwarding.trusted_peers[1]: "fe80::1%eth0" is not an IP address or a CIDR prefix like 10.0.0.0/8`,
				`listeners[0].http.forwarding.trusted_peers[2]: "proxy.internal" is not an IP address or a CIDR prefix like 10.0.0.0/8`,
				`listeners[0].http.forwarding.trusted_peers[3]: "10.1.2.3/8" has bits set past its length: write 10.0.0.0/8, or 10.1.2.3/32 for the one address`,
			},
		},
		{
			name: "trusted peers without headers",
			http: `{forwarding: {style: NONE, trusted_peers: ["10.0.0.0/8"]}}`,
			want: []string{"listeners[0].http.forwarding.trusted_peers: has no effect when style is NONE (no forwarding header is written or read), unless client_header or request_id reads a trusted peer's"},
		},
		{
			name: "client from a header of its own, no forwarding headers written",
			http: `{forwarding: {style: NONE, trusted_peers: ["10.0.0.0/8"], client_from_headers: true, client_header: CF-Connecting-IP}}`,
		},
		{
			name: "request ids",
			http: `{request_id: {header: X-Trace-Id}, forwarding: {style: NONE, trusted_peers: ["10.0.0.0/8"]}}`,
		},
		{
			name: "request ids in a field the proxy owns",
			http: `{request_id: {header: x-forwarded-for}}`,
			want: []string{"listeners[0].http.request_id.header: x-forwarded-for is a field the proxy writes itself"},
		},
		{
			name: "request ids in no header",
			http: `{request_id: {header: "X Id"}}`,
			want: []string{`listeners[0].http.request_id.header: "X Id" is not a valid header name (letters, digits and !#$%&'*+-.^_` + "`" + `|~ only)`},
		},
		{
			name: "request ids in responses",
			http: `{request_id: {in_response: true}}`,
		},
		{
			name: "request ids in a field the client reads, not in responses",
			http: `{request_id: {header: Content-Location}}`,
		},
		{
			name: "request ids in responses, in a field the client reads",
			http: `{request_id: {header: Content-Location, in_response: true}}`,
			want: []string{"listeners[0].http.request_id.header: Content-Location has a meaning to the client: with in_response, the id would replace the endpoint's"},
		},
		{
			name: "request ids in responses, in Set-Cookie",
			http: `{request_id: {header: set-cookie, in_response: true}}`,
			want: []string{"listeners[0].http.request_id.header: set-cookie has a meaning to the client: with in_response, the id would replace the endpoint's"},
		},
		{
			name: "client header without client_from_headers",
			http: `{forwarding: {trusted_peers: ["10.0.0.0/8"], client_header: X-Real-IP}}`,
			want: []string{"listeners[0].http.forwarding.client_header: needs client_from_headers: true"},
		},
		{
			name: "client header not a header name",
			http: `{forwarding: {trusted_peers: ["10.0.0.0/8"], client_from_headers: true, client_header: "X Real IP"}}`,
			want: []string{`listeners[0].http.forwarding.client_header: "X Real IP" is not a valid header name (letters, digits and !#$%&'*+-.^_` + "`" + `|~ only)`},
		},
		{
			name: "client header Forwarded",
			http: `{forwarding: {trusted_peers: ["10.0.0.0/8"], client_from_headers: true, client_header: forwarded}}`,
			want: []string{"listeners[0].http.forwarding.client_header: Forwarded is read with style RFC7239 (or BOTH), not as a client_header"},
		},
		{
			name: "client header the proxy owns",
			http: `{forwarding: {trusted_peers: ["10.0.0.0/8"], client_from_headers: true, client_header: Host}}`,
			want: []string{"listeners[0].http.forwarding.client_header: Host is a field the proxy owns, which names no client"},
		},
		{
			name: "client header too long",
			http: `{forwarding: {trusted_peers: ["10.0.0.0/8"], client_from_headers: true, client_header: X-` + strings.Repeat("a", 63) + `}}`,
			want: []string{"listeners[0].http.forwarding.client_header: must be at most 64 characters long"},
		},
		{
			name: "client from the headers of no one",
			http: `{forwarding: {client_from_headers: true}}`,
			want: []string{"listeners[0].http.forwarding.client_from_headers: needs trusted_peers: the proxies in front whose headers name the client"},
		},
		{
			name: "limits out of range",
			http: `{max_header_bytes: 100, max_uri_length: 70000, max_header_count: 10001, tunnel_idle_timeout: 0s}`,
			want: []string{
				"listeners[0].http.max_header_bytes: must be 0 (the default, 65535) or at least 256",
				"listeners[0].http.max_header_count: must be <= 10000",
				"listeners[0].http.max_uri_length: must be <= 65536",
				"listeners[0].http.tunnel_idle_timeout: must be between 1ms and 168h0m0s",
			},
		},
		{
			name: "head too large for the engine",
			http: `{max_header_bytes: 65537}`,
			want: []string{"listeners[0].http.max_header_bytes: must be <= 65536"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := errorLines(Validate(mustParse(t, doc([]string{okCluster}, listener(tt.http)))))
			if !equalLines(got, tt.want) {
				t.Errorf("Validate() faults:\n got: %q\nwant: %q", got, tt.want)
			}
		})
	}
}
