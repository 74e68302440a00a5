package snapshot

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/internal/testcert"
)

func TestValidateUpstreamTLS(t *testing.T) {
	ca := testcert.NewCA(t).PEM
	// Flow-style YAML quotes the PEM with its line ends escaped.
	caPEM := fmt.Sprintf("%q", ca)
	for _, tc := range []struct {
		name string
		tls  string
		want []string // none: valid
	}{
		{"system roots", `{}`, nil},
		{"inline CA", `{ca_pem: ` + caPEM + `, server_name: api.internal, min_version: TLS_1_3}`, nil},
		{"CA file", `{ca_file: /etc/sluice/ca.pem}`, nil},
		{"skip verify", `{insecure_skip_verify: true}`, nil},
		{"IP server name", `{server_name: "10.0.0.1"}`, nil},
		{"both CAs", `{ca_pem: ` + caPEM + `, ca_file: /etc/ca.pem}`,
			[]string{"clusters[0].tls: give at most one of ca_pem and ca_file"}},
		{"skip verify with a CA", `{ca_file: /etc/ca.pem, insecure_skip_verify: true}`,
			[]string{"clusters[0].tls.insecure_skip_verify: verifies nothing, so the ca_pem or ca_file given would go unused"}},
		{"not PEM", `{ca_pem: "hello"}`, []string{"clusters[0].tls.ca_pem: no PEM CERTIFICATE block found"}},
		{"broken certificate", `{ca_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}`,
			[]string{"clusters[0].tls.ca_pem: certificate 1: "}},
		{"bad server name", `{server_name: "a b.example"}`,
			[]string{`clusters[0].tls.server_name: "a b.example" is neither a DNS name nor an IP address`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := Parse([]byte(doc([]string{`{name: web, tls: ` + tc.tls + `, endpoints: [{name: a, address: "10.0.0.1:443"}]}`}, nil)), "t.yaml")
			if err != nil {
				t.Fatal(err)
			}
			err = Validate(snap)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted it, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate:\n%v\nwant %q", err, w)
				}
			}
		})
	}
}
