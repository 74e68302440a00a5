package snapshot

import "testing"

func TestValidateProxyProtocol(t *testing.T) {
	const head = `
clusters:
  - name: web
    send_proxy: V2
    endpoints:
      - { name: a, address: 127.0.0.1:9001 }
      - { name: b, address: 127.0.0.1:9002, send_proxy: OFF }
      - { name: c, address: 127.0.0.1:9003, send_proxy: V1 }
listeners:
  - name: public
    address: 127.0.0.1:8080
    protocol: HTTP
    default_cluster: web
`
	for _, tc := range []struct {
		name, block string
		want        []string
	}{
		{"none", ``, nil},
		{"every peer", `    proxy_protocol: {}` + "\n", nil},
		{"trusted", `    proxy_protocol: { required: true, timeout: 2s, trusted_sources: [10.0.0.0/8, "2001:db8::/32", 192.0.2.7, "::ffff:10.1.0.0/112"] }` + "\n", nil},
		{"bad sources", `    proxy_protocol: { trusted_sources: [10.0.0.0/8, 10.0.0.1/8, lb.example, "fe80::1%eth0"] }` + "\n", []string{
			`listeners[0].proxy_protocol.trusted_sources[1]: "10.0.0.1/8" has bits set past its length: write 10.0.0.0/8, or 10.0.0.1/32 for the one address`,
			`listeners[0].proxy_protocol.trusted_sources[2]: "lb.example" is not an IP address or a CIDR prefix like 10.0.0.0/8`,
			`listeners[0].proxy_protocol.trusted_sources[3]: "fe80::1%eth0" is not an IP address or a CIDR prefix like 10.0.0.0/8`,
		}},
		{"empty source", `    proxy_protocol: { trusted_sources: [""] }` + "\n", []string{
			`listeners[0].proxy_protocol.trusted_sources[0]: must be 1 to 64 characters long`,
		}},
		{"timeout", `    proxy_protocol: { timeout: 0s }` + "\n", []string{
			`listeners[0].proxy_protocol.timeout: must be between 1ms and 5m0s`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := errorLines(Validate(mustParse(t, head+tc.block)))
			if !equalLines(got, tc.want) {
				t.Errorf("Validate() faults:\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}
