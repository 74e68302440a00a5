package snapshot

import (
	"strings"
	"testing"
)

// TestValidateHTTP2: what sluicectl validate says of HTTP/2 settings, in
// YAML as users write them.
func TestValidateHTTP2(t *testing.T) {
	const head = `
clusters:
  - { name: grpc, http2: true, endpoints: [ { name: g, address: 127.0.0.1:9000 } ] }
listeners:
  - name: l
    address: 127.0.0.1:8443
    protocol: HTTP
    default_cluster: grpc
`
	const tls = `
    tls: { alpn: %s, certificates: [ { cert_file: /a.crt, key_file: /a.key } ] }
`
	for _, tc := range []struct {
		name, yaml, want string // want "" for valid
	}{
		{"h2c", "    http: { h2c: true, max_concurrent_streams: 100 }\n", ""},
		{"TLS, default ALPN", strings.Replace(tls, "alpn: %s, ", "", 1), ""},
		{"TLS, h2 only", strings.Replace(tls, "%s", "[h2]", 1), ""},
		{"h2c with TLS", "    http: { h2c: true }" + strings.Replace(tls, "%s", "[h2]", 1),
			"listeners[0].http.h2c: h2c is HTTP/2 without TLS"},
		{"ALPN twice", strings.Replace(tls, "%s", "[h2, http/1.1, h2]", 1),
			`listeners[0].tls.alpn[2]: "h2" is already listed at tls.alpn[0]`},
		{"unknown ALPN", strings.Replace(tls, "%s", "[h3]", 1), "listeners[0].tls.alpn[0]"},
		{"streams, h2c by default", "    http: { max_concurrent_streams: 10 }\n", ""},
		{"h2c false", "    http: { h2c: false }" + strings.Replace(tls, "%s", "[h2]", 1), ""},
		{"streams without HTTP/2", "    http: { h2c: false, max_concurrent_streams: 10 }\n",
			"listeners[0].http.max_concurrent_streams: the listener does not speak HTTP/2: its http.h2c is false"},
		{"streams, TLS without h2", "    http: { max_concurrent_streams: 10 }" + strings.Replace(tls, "%s", "[http/1.1]", 1),
			`listeners[0].http.max_concurrent_streams: the listener does not speak HTTP/2: its tls.alpn does not offer "h2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := Parse([]byte(head+tc.yaml), "t.yaml")
			if err == nil {
				err = Validate(snap)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
