package snapshot

import (
	"errors"
	"strings"
	"testing"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// doc builds a snapshot document from clusters and listeners written in
// YAML flow style.
func doc(clusters, listeners []string) string {
	var b strings.Builder
	if len(clusters) > 0 {
		b.WriteString("clusters:\n")
		for _, c := range clusters {
			b.WriteString("  - " + c + "\n")
		}
	}
	if len(listeners) > 0 {
		b.WriteString("listeners:\n")
		for _, l := range listeners {
			b.WriteString("  - " + l + "\n")
		}
	}
	return b.String()
}

const okCluster = `{name: web, endpoints: [{name: a, address: "10.0.0.1:80"}]}`

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		clusters  []string
		listeners []string
		want      []string
	}{
		{
			name:     "weight over 256",
			clusters: []string{`{name: web, endpoints: [{name: a, address: "10.0.0.1:80"}, {name: b, address: "10.0.0.2:80", weight: 257}]}`},
			want:     []string{"clusters[0].endpoints[1].weight: must be <= 256"},
		},
		{
			name:     "weight 0 and 256 are fine",
			clusters: []string{`{name: web, endpoints: [{name: a, address: "10.0.0.1:80", weight: 0}, {name: b, address: "10.0.0.2:80", weight: 256}]}`},
		},
		{
			name:     "bad names",
			clusters: []string{`{name: "-web", endpoints: [{name: "a b", address: "10.0.0.1:80"}]}`},
			want: []string{
				"clusters[0].name: must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit",
				"clusters[0].endpoints[0].name: must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit",
			},
		},
		{
			name: "every policy with its options",
			clusters: []string{
				`{name: a, lb_policy: STATIC_RR}`,
				`{name: b, lb_policy: FIRST, endpoints: [{name: e, address: "10.0.0.1:80", max_conn: 1}]}`,
				`{name: c, lb_policy: LEAST_CONN}`,
				`{name: d, lb_policy: RANDOM, random: {draws: 1}}`,
				`{name: e, lb_policy: HASH, hash: {key: SOURCE_IP, method: MAGLEV, balance_factor: 125}}`,
				`{name: f, lb_policy: HASH, hash: {key: HEADER, name: Host, use_domain_only: true, method: RING}}`,
				`{name: g, lb_policy: HASH, hash: {key: COOKIE, name: session}}`,
				`{name: h, lb_policy: HASH, hash: {key: URL_PARAM, name: user_id}}`,
			},
		},
		{
			name:     "HASH without a key",
			clusters: []string{`{name: web, lb_policy: HASH}`},
			want:     []string{"clusters[0].hash: required when lb_policy is HASH: say which key to hash, e.g. hash: { key: SOURCE_IP }"},
		},
		{
			name:     "hash block with another policy",
			clusters: []string{`{name: web, hash: {key: URI}}`},
			want:     []string{"clusters[0].hash: only allowed when lb_policy is HASH"},
		},
		{
			name:     "header key without a name",
			clusters: []string{`{name: web, lb_policy: HASH, hash: {key: HEADER}}`},
			want:     []string{"clusters[0].hash.name: required with key HEADER: the name of the header to hash"},
		},
		{
			name:     "cookie name with invalid characters",
			clusters: []string{`{name: web, lb_policy: HASH, hash: {key: COOKIE, name: "sess id;"}}`},
			want:     []string{`clusters[0].hash.name: "sess id;" is not a valid cookie name (letters, digits and !#$%&'*+-.^_` + "`" + `|~ only)`},
		},
		{
			name:     "receive buffer too small, too large; 0 and the bounds are fine",
			clusters: []string{`{name: a, receive_buffer_bytes: 4095}`, `{name: b, receive_buffer_bytes: 67108865}`, `{name: c, receive_buffer_bytes: 0}`, `{name: d, receive_buffer_bytes: 4096}`, `{name: e, receive_buffer_bytes: 67108864}`},
			want: []string{
				"clusters[0].receive_buffer_bytes: must be between 4096 and 67108864",
				"clusters[1].receive_buffer_bytes: must be between 4096 and 67108864",
			},
		},
		{
			name:     "draws below 1",
			clusters: []string{`{name: web, lb_policy: RANDOM, random: {draws: 0}}`},
			want:     []string{"clusters[0].random.draws: must be between 1 and 16"},
		},
		{
			name:     "random block with another policy, balance factor too small",
			clusters: []string{`{name: web, random: {draws: 2}}`, `{name: api, lb_policy: HASH, hash: {key: URI, balance_factor: 50}}`},
			want: []string{
				"clusters[0].random: only allowed when lb_policy is RANDOM",
				"clusters[1].hash.balance_factor: must be 0 (off) or at least 100 (percent of the average load)",
			},
		},
		{
			name:     "duplicate cluster name",
			clusters: []string{okCluster, `{name: api}`, okCluster},
			want:     []string{`clusters[2].name: duplicate cluster name "web", first defined at clusters[0]`},
		},
		{
			name:     "duplicate endpoint name",
			clusters: []string{`{name: web, endpoints: [{name: a, address: "10.0.0.1:80"}, {name: a, address: "10.0.0.2:80"}]}`},
			want:     []string{`clusters[0].endpoints[1].name: duplicate endpoint name "a", first defined at clusters[0].endpoints[0]`},
		},
		{
			name:      "duplicate listener name",
			clusters:  []string{okCluster},
			listeners: []string{`{name: l, address: ":80", protocol: TCP, default_cluster: web}`, `{name: l, address: ":81", protocol: TCP, default_cluster: web}`},
			want:      []string{`listeners[1].name: duplicate listener name "l", first defined at listeners[0]`},
		},
		{
			name:      "default cluster missing, with a suggestion",
			clusters:  []string{okCluster},
			listeners: []string{`{name: l, address: ":80", protocol: TCP, default_cluster: wbe}`, `{name: m, address: ":81", protocol: TCP, default_cluster: billing}`},
			want: []string{
				`listeners[0].default_cluster: unknown cluster "wbe", did you mean "web"?`,
				`listeners[1].default_cluster: unknown cluster "billing"`,
			},
		},
		{
			name:      "default cluster empty is reported once",
			clusters:  []string{okCluster},
			listeners: []string{`{name: l, address: ":80", protocol: TCP}`},
			want:      []string{"listeners[0].default_cluster: must not be empty"},
		},
		{
			name:      "protocol required",
			clusters:  []string{okCluster},
			listeners: []string{`{name: l, address: ":80", default_cluster: web}`},
			want:      []string{"listeners[0].protocol: is required; one of TCP, HTTP"},
		},
		{
			name: "endpoint addresses",
			clusters: []string{`{name: web, endpoints: [
				{name: dns, address: "backend-1.internal:8080"},
				{name: v6, address: "[2001:db8::1]:443"},
				{name: srv, address: "_http._tcp.example.com.:80"},
				{name: noport, address: "10.0.0.1"},
				{name: port0, address: "10.0.0.1:0"},
				{name: bigport, address: "10.0.0.1:65536"},
				{name: named, address: "10.0.0.1:http"},
				{name: nohost, address: ":80"},
				{name: badhost, address: "a..b:80"},
				{name: rawv6, address: "2001:db8::1:443"},
				{name: badip, address: "10.0.0.999:80"},
				{name: url, address: "http://10.0.0.1:8080/api"}]}`},
			want: []string{
				"clusters[0].endpoints[3].address: must be host:port (missing port in address)",
				`clusters[0].endpoints[4].address: port "0" must be a number from 1 to 65535`,
				`clusters[0].endpoints[5].address: port "65536" must be a number from 1 to 65535`,
				`clusters[0].endpoints[6].address: port "http" must be a number from 1 to 65535`,
				"clusters[0].endpoints[7].address: host is missing",
				`clusters[0].endpoints[8].address: host "a..b" must be an IP address or a DNS name`,
				"clusters[0].endpoints[9].address: must be host:port; write IPv6 addresses in brackets, e.g. [::1]:8080",
				`clusters[0].endpoints[10].address: host "10.0.0.999" must be an IP address or a DNS name`,
				`clusters[0].endpoints[11].address: must be host:port, not a URL: write "10.0.0.1:8080", without http:// or a path`,
			},
		},
		{
			name:     "too short address is reported once",
			clusters: []string{`{name: web, endpoints: [{name: a, address: ":1"}]}`},
			want:     []string{"clusters[0].endpoints[0].address: must be 3 to 261 characters long"},
		},
		{
			name:     "listener addresses",
			clusters: []string{okCluster},
			listeners: []string{
				`{name: any, address: ":8000", protocol: TCP, default_cluster: web}`,
				`{name: local, address: "localhost:8001", protocol: TCP, default_cluster: web}`,
				`{name: v6, address: "[::1]:8002", protocol: TCP, default_cluster: web}`,
				`{name: dns, address: "lb.example.com:8003", protocol: TCP, default_cluster: web}`,
				`{name: noport, address: "127.0.0.1", protocol: TCP, default_cluster: web}`,
			},
			want: []string{
				`listeners[3].address: host "lb.example.com" must be an IP address, "localhost" or empty`,
				"listeners[4].address: must be host:port (missing port in address)",
			},
		},
		{
			name:     "listeners binding the same address",
			clusters: []string{okCluster},
			listeners: []string{
				`{name: a, address: "127.0.0.1:80", protocol: TCP, default_cluster: web}`,
				`{name: b, address: "127.0.0.1:80", protocol: HTTP, default_cluster: web}`,
				`{name: c, address: "localhost:80", protocol: TCP, default_cluster: web}`,
				`{name: d, address: "0.0.0.0:81", protocol: TCP, default_cluster: web}`,
				`{name: e, address: "10.1.2.3:81", protocol: TCP, default_cluster: web}`,
				`{name: f, address: "[::1]:81", protocol: TCP, default_cluster: web}`,
				`{name: g, address: "127.0.0.1:82", protocol: TCP, default_cluster: web}`,
				`{name: h, address: ":82", protocol: TCP, default_cluster: web}`,
			},
			want: []string{
				"listeners[1].address: 127.0.0.1:80 is already bound by listeners[0] (a)",
				"listeners[2].address: localhost:80 overlaps 127.0.0.1:80 of listeners[0] (a)",
				"listeners[4].address: 10.1.2.3:81 overlaps 0.0.0.0:81 of listeners[3] (d)",
				"listeners[7].address: :82 overlaps 127.0.0.1:82 of listeners[6] (g)",
			},
		},
		{
			name:     "http options on a TCP listener",
			clusters: []string{okCluster},
			listeners: []string{
				`{name: a, address: ":80", protocol: TCP, default_cluster: web, http: {idle_timeout: 5s}}`,
				`{name: b, address: ":81", protocol: HTTP, default_cluster: web, http: {idle_timeout: 5s}}`,
			},
			want: []string{"listeners[0].http: only allowed when protocol is HTTP"},
		},
		{
			name:     "tcp options on an HTTP listener",
			clusters: []string{okCluster},
			listeners: []string{
				`{name: a, address: ":80", protocol: HTTP, default_cluster: web, tcp: {rebalance: {}}}`,
				`{name: b, address: ":81", protocol: TCP, default_cluster: web, tcp: {rebalance: {tolerance_percent: 10, max_closes_per_second: 50, min_idle: 2s}}}`,
				`{name: c, address: ":82", protocol: TCP, default_cluster: web, tcp: {}}`,
				`{name: d, address: ":83", protocol: TCP, default_cluster: web, tcp: {idle_timeout: 168h}}`,
			},
			want: []string{"listeners[0].tcp: only allowed when protocol is TCP"},
		},
		{
			name:     "tcp idle timeout out of range",
			clusters: []string{okCluster},
			listeners: []string{
				`{name: a, address: ":80", protocol: TCP, default_cluster: web, tcp: {idle_timeout: 0s}}`,
				`{name: b, address: ":81", protocol: TCP, default_cluster: web, tcp: {idle_timeout: 169h}}`,
			},
			want: []string{
				"listeners[0].tcp.idle_timeout: must be between 1ms and 168h0m0s",
				"listeners[1].tcp.idle_timeout: must be between 1ms and 168h0m0s",
			},
		},
		{
			name:     "tcp keep-alive out of range",
			clusters: []string{`{name: web, tcp_keepalive: {idle: 0s, interval: 32768s, probes: 128}}`},
			listeners: []string{
				`{name: a, address: ":80", protocol: TCP, default_cluster: web, tcp_keepalive: {idle: 2h, interval: 500ms}}`,
				`{name: b, address: ":81", protocol: HTTP, default_cluster: web, tcp_keepalive: {idle: 10m, interval: 30s, probes: 5}}`,
				`{name: c, address: ":82", protocol: HTTP, default_cluster: web, tcp_keepalive: {}}`,
			},
			want: []string{
				"clusters[0].tcp_keepalive.idle: must be between 1s and 9h6m7s",
				"clusters[0].tcp_keepalive.interval: must be between 1s and 9h6m7s",
				"clusters[0].tcp_keepalive.probes: must be between 1 and 127",
				"listeners[0].tcp_keepalive.interval: must be between 1s and 9h6m7s",
			},
		},
		{
			name:     "max connections out of range",
			clusters: []string{okCluster},
			listeners: []string{
				`{name: a, address: ":80", protocol: TCP, default_cluster: web, max_connections: 10000001}`,
				`{name: b, address: ":81", protocol: HTTP, default_cluster: web, max_connections: 10000000}`,
				`{name: c, address: ":82", protocol: HTTP, default_cluster: web, max_connections: 0}`,
			},
			want: []string{"listeners[0].max_connections: must be <= 10000000"},
		},
		{
			name: "rebalance where reconnects come back",
			clusters: []string{
				okCluster,
				`{name: h, lb_policy: HASH, hash: {key: SOURCE_IP}}`,
				`{name: f, lb_policy: FIRST}`,
				`{name: s, lb_policy: LEAST_CONN, stick: {on: SOURCE_IP}}`,
				`{name: lc, lb_policy: LEAST_CONN}`,
			},
			listeners: []string{
				`{name: a, address: ":80", protocol: TCP, default_cluster: h, tcp: {rebalance: {}}}`,
				`{name: b, address: ":81", protocol: TCP, default_cluster: f, tcp: {rebalance: {}}}`,
				`{name: c, address: ":82", protocol: TCP, default_cluster: s, tcp: {rebalance: {}}}`,
				`{name: d, address: ":83", protocol: TCP, default_cluster: lc, tcp: {rebalance: {}}}`,
				`{name: e, address: ":84", protocol: TCP, default_cluster: web, tcp: {rebalance: {}}}`,
				`{name: f, address: ":85", protocol: TCP, default_cluster: h}`,
			},
			want: []string{
				`listeners[0].tcp.rebalance: cluster "h" balances by hash, so a client whose session is closed comes back to the same endpoint; rebalance needs a policy that places sessions by load, such as LEAST_CONN`,
				`listeners[1].tcp.rebalance: cluster "f" fills its first endpoint first (FIRST), so a client whose session is closed comes back to the same endpoint; rebalance needs a policy that places sessions by load, such as LEAST_CONN`,
				`listeners[2].tcp.rebalance: cluster "s" keeps a stick table, so a client whose session is closed comes back to the same endpoint; rebalance needs sessions placed by load: remove the cluster's stick table`,
			},
		},
		{
			name:     "rebalance out of range",
			clusters: []string{okCluster},
			listeners: []string{
				`{name: a, address: ":80", protocol: TCP, default_cluster: web, tcp: {rebalance: {tolerance_percent: 0, max_closes_per_second: 100001, min_idle: 0s}}}`,
			},
			want: []string{
				"listeners[0].tcp.rebalance.tolerance_percent: must be between 1 and 1000",
				"listeners[0].tcp.rebalance.max_closes_per_second: must be between 1 and 100000",
				"listeners[0].tcp.rebalance.min_idle: must be between 1ms and 1h0m0s",
			},
		},
		{
			name: "durations and counts out of range",
			clusters: []string{`{name: web, connect_timeout: 10m, drain_timeout: -1s,
				health_check: {interval: 1ms, timeout: 2h, fall: 101, rise: 100}}`},
			listeners: []string{`{name: a, address: ":80", protocol: HTTP, default_cluster: web, http: {request_header_timeout: 0s}}`},
			want: []string{
				"clusters[0].health_check.interval: must be between 100ms and 1h0m0s",
				"clusters[0].health_check.timeout: must be between 1ms and 1h0m0s",
				"clusters[0].health_check.fall: must be between 1 and 100",
				"clusters[0].connect_timeout: must be between 0s and 5m0s",
				"clusters[0].drain_timeout: must be between 0s and 24h0m0s",
				"listeners[0].http.request_header_timeout: must be between 1ms and 1h0m0s",
			},
		},
		{
			name: "persistence, queueing and slow start",
			clusters: []string{
				`{name: web, slow_start: 30s, max_queue: 100, queue_timeout: 2s, cookie: {name: SERVERID, indirect: true, nocache: true, httponly: true, secure: true, max_age: 1h, path: /app, domain: example.com, same_site: LAX}, stick: {on: SOURCE_IP, expire: 10m, size: 1000}, endpoints: [{name: a, address: "10.0.0.1:80", cookie: s1}, {name: b, address: "10.0.0.2:80", non_stick: true, state: DRAINING}, {name: c, address: "10.0.0.3:80", state: DISABLED}]}`,
			},
		},
		{
			name: "persistence faults",
			clusters: []string{
				`{name: web, lb_policy: STATIC_RR, slow_start: 30s, cookie: {name: "SERVER ID", path: "/a;b", same_site: NONE}, endpoints: [{name: a, address: "10.0.0.1:80", cookie: s1}, {name: b, address: "10.0.0.2:80", cookie: s1}, {name: c, address: "10.0.0.3:80", cookie: "s;2"}]}`,
				`{name: api, stick: {expire: 0s}, cookie: {name: ""}}`,
				`{name: shop, cookie: {name: SID, path: app}}`,
			},
			want: []string{
				`clusters[0].endpoints[1].cookie: duplicate cookie value "s1", first used by clusters[0].endpoints[0]`,
				`clusters[0].endpoints[2].cookie: "s;2" is not a valid cookie value (no spaces, quotes, commas, semicolons or backslashes)`,
				"clusters[0].slow_start: only allowed when lb_policy is ROUND_ROBIN, LEAST_CONN or RANDOM (STATIC_RR does not use weights at run time)",
				`clusters[0].cookie.name: "SERVER ID" is not a valid cookie name (letters, digits and !#$%&'*+-.^_` + "`" + `|~ only)`,
				`clusters[0].cookie.path: "/a;b" may not contain ';', spaces or control characters`,
				"clusters[0].cookie.same_site: NONE requires secure: true (browsers drop SameSite=None cookies that are not Secure)",
				"clusters[1].cookie.name: must be 1 to 64 characters long",
				"clusters[1].stick.on: is required; one of SOURCE_IP",
				"clusters[1].stick.expire: must be between 1s and 168h0m0s",
				`clusters[2].cookie.path: "app" must start with '/': browsers ignore a path that does not (RFC 6265, 5.2.4), and the cookie would not reach the rest of the site`,
				`listeners[0].default_cluster: cluster "api" has cookie persistence, which needs an HTTP listener (use stick: { on: SOURCE_IP } for TCP)`,
			},
			listeners: []string{`{name: db, address: "127.0.0.1:5432", protocol: TCP, default_cluster: api}`},
		},
		{
			name: "health checks, error pages",
			clusters: []string{
				`{name: web, health_check: {interval: 1s, timeout: 500ms, fall: 2, rise: 1, fast_interval: 200ms, down_interval: 5s, jitter_percent: 20, http: {method: HEAD, path: /health, host: example.com, expected_status: "200-299,304"}}}`,
				// A timeout longer than the interval, as HAProxy's timeout
				// check and Envoy's allow: the next check waits for this one.
				`{name: slow, health_check: {interval: 1s, timeout: 3s}}`,
			},
			listeners: []string{`{name: l, address: "127.0.0.1:80", protocol: HTTP, default_cluster: web, http: {max_connection_age: 5m, max_requests_per_connection: 1000, error_pages: [{status: 503, body: "<h1>Back soon</h1>", content_type: "text/html; charset=utf-8"}, {status: 502, redirect: "https://status.example.com/", redirect_code: 307}]}}`},
		},
		{
			name: "health check and error page faults",
			clusters: []string{
				`{name: web, health_check: {interval: 50ms, fall: 0, rise: 0}}`,
				`{name: api, health_check: {interval: 1s, timeout: 3s, http: {method: "GE T", path: "health", expected_status: "200-2000"}}}`,
				`{name: db, health_check: {http: {method: head}}}`,
			},
			listeners: []string{`{name: l, address: "127.0.0.1:80", protocol: HTTP, default_cluster: web, http: {error_pages: [{status: 503}, {status: 503, body: x, redirect: "/y"}, {status: 500, body: x}, {status: 504, body: x, redirect_code: 302}]}}`},
			want: []string{
				"clusters[0].health_check.interval: must be between 100ms and 1h0m0s",
				"clusters[0].health_check.fall: must be between 1 and 100",
				"clusters[0].health_check.rise: must be between 1 and 100",
				`clusters[1].health_check.http.method: "GE T" is not an HTTP method`,
				`clusters[1].health_check.http.path: "health" must start with / and have no spaces or control characters`,
				`clusters[1].health_check.http.expected_status: "2000" is not a status code (100-599)`,
				`clusters[2].health_check.http.method: "head": methods are case-sensitive, did you mean "HEAD"?`,
				"listeners[0].http.error_pages: must have at most 3 items",
				"listeners[0].http.error_pages[0]: needs a body or a redirect",
				"listeners[0].http.error_pages[1].status: 503 already has a page at listeners[0].http.error_pages[0]",
				"listeners[0].http.error_pages[1].redirect: a page has a body or a redirect, not both",
				"listeners[0].http.error_pages[2].status: must be one of 502 503 504",
				"listeners[0].http.error_pages[3].redirect_code: only allowed with redirect",
			},
		},
		{
			name: "outlier detection",
			clusters: []string{
				`{name: a, outlier_detection: {}}`,
				`{name: b, outlier_detection: {consecutive_connect_failures: 3, consecutive_5xx: 0, base_ejection_time: 10s, max_ejection_time: 10s, max_ejection_percent: 100}}`,
				`{name: c, outlier_detection: {consecutive_connect_failures: 0, base_ejection_time: 5m}}`,
			},
		},
		{
			name: "outlier detection faults",
			clusters: []string{
				`{name: a, outlier_detection: {consecutive_connect_failures: 0, consecutive_5xx: 0}}`,
				`{name: b, outlier_detection: {base_ejection_time: 1m, max_ejection_time: 30s}}`,
				`{name: c, outlier_detection: {max_ejection_time: 10s}}`,
				`{name: d, outlier_detection: {consecutive_5xx: 1001, base_ejection_time: 50ms, max_ejection_percent: 101}}`,
			},
			want: []string{
				"clusters[0].outlier_detection: consecutive_connect_failures and consecutive_5xx are both 0: nothing would eject (leave outlier_detection out to turn it off)",
				"clusters[1].outlier_detection.max_ejection_time: 30s is shorter than base_ejection_time (1m0s): the cap must allow a first ejection",
				"clusters[2].outlier_detection.max_ejection_time: 10s is shorter than base_ejection_time (30s, the default): the cap must allow a first ejection",
				"clusters[3].outlier_detection.consecutive_5xx: must be <= 1000",
				"clusters[3].outlier_detection.base_ejection_time: must be between 100ms and 1h0m0s",
				"clusters[3].outlier_detection.max_ejection_percent: must be <= 100",
			},
		},
		{
			name: "every fault, in document order",
			clusters: []string{
				`{name: web, endpoints: [{name: a, address: "x"}, {name: a, address: "10.0.0.2:80", weight: 999}]}`,
				`{name: web}`,
			},
			listeners: []string{`{name: l, address: "127.0.0.1:80", protocol: TCP, default_cluster: api, http: {}}`},
			want: []string{
				"clusters[0].endpoints[0].address: must be 3 to 261 characters long",
				`clusters[0].endpoints[1].name: duplicate endpoint name "a", first defined at clusters[0].endpoints[0]`,
				"clusters[0].endpoints[1].weight: must be <= 256",
				`clusters[1].name: duplicate cluster name "web", first defined at clusters[0]`,
				`listeners[0].default_cluster: unknown cluster "api"`,
				"listeners[0].http: only allowed when protocol is HTTP",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, doc(tt.clusters, tt.listeners))
			err := Validate(s)
			if got := errorLines(err); !equalLines(got, tt.want) {
				t.Errorf("Validate() faults:\n got: %q\nwant: %q", got, tt.want)
			}
			if err != nil {
				var es Errors
				if !errors.As(err, &es) {
					t.Errorf("Validate() error is %T, want Errors", err)
				}
			}
		})
	}
}

func TestValidateInvalidEnumNumber(t *testing.T) {
	s := &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{{Name: "web", LbPolicy: 42}}}
	want := []string{"clusters[0].lb_policy: must be one of ROUND_ROBIN, STATIC_RR, FIRST, LEAST_CONN, RANDOM, HASH"}
	if got := errorLines(Validate(s)); !equalLines(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestValidateNil(t *testing.T) {
	if err := Validate(nil); err != nil {
		t.Errorf("Validate(nil) = %v, want nil", err)
	}
	if err := Validate(&sluicev1.Snapshot{}); err != nil {
		t.Errorf("Validate(empty) = %v, want nil", err)
	}
}

func TestGoCamelCase(t *testing.T) {
	// PGV names fields by their Go names; the mapping back must be exact.
	for _, tt := range []struct{ in, want string }{
		{"default_cluster", "DefaultCluster"},
		{"http", "Http"},
		{"request_header_timeout", "RequestHeaderTimeout"},
		{"ipv6_addr", "Ipv6Addr"},
		{"_x", "XX"},
	} {
		if got := goCamelCase(tt.in); got != tt.want {
			t.Errorf("goCamelCase(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
