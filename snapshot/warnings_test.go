package snapshot

import (
	"slices"
	"testing"
)

func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{{
		name: "nothing to warn of",
		yaml: `
clusters:
  - { name: web, lb_policy: HASH, hash: { key: HEADER, name: X-User }, outlier_detection: { consecutive_5xx: 3 } }
  - { name: db, lb_policy: HASH, hash: { key: SOURCE_IP }, outlier_detection: { consecutive_connect_failures: 2 } }
  - { name: spare, lb_policy: HASH, hash: { key: URI } }
listeners:
  - { name: h, address: "127.0.0.1:8080", protocol: HTTP, default_cluster: web }
  - { name: t, address: "127.0.0.1:5432", protocol: TCP, default_cluster: db,
      tcp: { inspect_timeout: 2s }, rules: [{ match: { not: { sni: { exact: [a.example] } } }, route: web }] }
`,
	}, {
		name: "TCP only",
		yaml: `
clusters:
  - { name: web, lb_policy: HASH, hash: { key: HEADER, name: X-User }, outlier_detection: { consecutive_5xx: 3 } }
  - { name: db, outlier_detection: { consecutive_connect_failures: 0 }, http2: true }
  - { name: grpc, http2: true, health_check: { http: { path: /healthz } } }
listeners:
  - { name: t1, address: "127.0.0.1:5432", protocol: TCP, default_cluster: db, tcp: { inspect_timeout: 2s },
      rules: [{ match: { source: [10.0.0.0/8] }, route: web }] }
  - { name: t2, address: "127.0.0.1:5433", protocol: TCP, default_cluster: web }
  - { name: t3, address: "127.0.0.1:5434", protocol: TCP, default_cluster: grpc }
`,
		want: []string{
			`clusters[0].hash.key: HEADER hashes HTTP requests, and only TCP listeners route to cluster "web" (t1, t2): their sessions are balanced round robin (SOURCE_IP hashes TCP sessions)`,
			`clusters[0].outlier_detection.consecutive_5xx: has no effect: it counts HTTP responses, and only TCP listeners route to cluster "web" (t1, t2); there consecutive_connect_failures ejects`,
			`clusters[1].outlier_detection: never ejects: consecutive_connect_failures is 0, and consecutive_5xx counts HTTP responses, while only TCP listeners route to cluster "db" (t1)`,
			`clusters[1].http2: has no effect: it says how HTTP requests are sent, and only TCP listeners route to cluster "db" (t1), whose bytes pass as they are`,
			`listeners[0].tcp.inspect_timeout: has no effect: no rule of the listener matches on sni or tls, so it reads nothing before it picks a cluster`,
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(tc.yaml), "")
			if err != nil {
				t.Fatal(err)
			}
			if err := Validate(s); err != nil {
				t.Fatalf("not valid: %v", err)
			}
			var got []string
			for _, w := range Warnings(s) {
				got = append(got, w.Error())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("warnings:\n%q\nwant:\n%q", got, tc.want)
			}
		})
	}
}
