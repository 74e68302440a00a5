package snapshot

import (
	"time"

	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

func mustMarshal(t testing.TB, s *sluicev1.Snapshot) []byte {
	t.Helper()
	b, err := Marshal(s)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	return b
}

func TestMarshalStyle(t *testing.T) {
	got := string(mustMarshal(t, mustParse(t, minimalYAML)))
	want := `clusters:
  - name: web
    lb_policy: ROUND_ROBIN
    health_check: {interval: 2s, fall: 3, rise: 2}
    endpoints:
      - {name: web1, address: '127.0.0.1:9001', weight: 2}
      - {name: web2, address: '127.0.0.1:9002', weight: 1}
      - {name: sorry, address: '127.0.0.1:9009', backup: true}
listeners:
  - name: public
    address: 127.0.0.1:8080
    protocol: HTTP
    default_cluster: web
  - name: db
    address: 127.0.0.1:6663
    protocol: TCP
    default_cluster: web
`
	if got != want {
		t.Errorf("Marshal(minimal):\n got:\n%s\nwant:\n%s", got, want)
	}
}

func TestMarshalJSON(t *testing.T) {
	s := &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{{
		Name: "web", LbPolicy: sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN, ConnectTimeout: durationpb.New(3e9),
		Endpoints: []*sluicev1.Endpoint{{Name: "a", Address: "10.0.0.1:80", Weight: proto.Uint32(0)}},
	}}}
	b, err := MarshalJSON(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "clusters": [
    {
      "name": "web",
      "lb_policy": "ROUND_ROBIN",
      "endpoints": [
        {
          "name": "a",
          "address": "10.0.0.1:80",
          "weight": 0
        }
      ],
      "connect_timeout": "3s"
    }
  ]
}
`
	if string(b) != want {
		t.Errorf("MarshalJSON:\n got:\n%s\nwant:\n%s", b, want)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		s    *sluicev1.Snapshot
	}{
		{"empty", &sluicev1.Snapshot{}},
		{"minimal", mustParse(t, minimalYAML)},
		{"every field", &sluicev1.Snapshot{
			Clusters: []*sluicev1.Cluster{{
				Name:           "web",
				LbPolicy:       sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN,
				HealthCheck:    &sluicev1.HealthCheck{Interval: durationpb.New(90e9), Timeout: durationpb.New(250e6), Fall: proto.Uint32(3), Rise: proto.Uint32(2)},
				ConnectTimeout: durationpb.New(3600e9),
				DrainTimeout:   durationpb.New(0),
				Endpoints: []*sluicev1.Endpoint{
					{Name: "a", Address: "[2001:db8::1]:443", Weight: proto.Uint32(0)},
					{Name: "b", Address: "backend.internal:80", Weight: proto.Uint32(256), Backup: true},
				},
			}, {Name: "empty-hc", HealthCheck: &sluicev1.HealthCheck{}}},
			Listeners: []*sluicev1.Listener{{
				Name: "public", Address: ":443", Protocol: sluicev1.Protocol_PROTOCOL_HTTP, DefaultCluster: "web",
				Http: &sluicev1.HttpOptions{RequestHeaderTimeout: durationpb.New(10e9), IdleTimeout: durationpb.New(61e9), ResponseTimeout: durationpb.New(1)},
			}},
		}},
		{"strings that look like other types", &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{
			{Name: "true"}, {Name: "123"}, {Name: "null"}, {Name: "1.5"}, {Name: "0x10"}, {Name: "yes"}, {Name: "2001-12-14"},
			{Name: "- dash"}, {Name: "a: b"}, {Name: "#x"}, {Name: " spaced "}, {Name: "multi\nline"}, {Name: ""}, {Name: "~"},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Read back as apply reads a file: the empty snapshot too
			// (written "clusters: []", as "{}" reads as a file cut short).
			y := mustMarshal(t, tt.s)
			got, _, err := ParseFile(y, "x.yaml")
			if err != nil {
				t.Fatalf("ParseFile(Marshal()): %v\n%s", err, y)
			}
			if !proto.Equal(got, tt.s) {
				t.Errorf("YAML round trip:\n got: %v\nwant: %v\nyaml:\n%s", got, tt.s, y)
			}
			j, err := MarshalJSON(tt.s)
			if err != nil {
				t.Fatalf("MarshalJSON: %v", err)
			}
			got, _, err = ParseFile(j, "x.json")
			if err != nil {
				t.Fatalf("ParseFile(MarshalJSON()): %v\n%s", err, j)
			}
			if !proto.Equal(got, tt.s) {
				t.Errorf("JSON round trip:\n got: %v\nwant: %v\njson:\n%s", got, tt.s, j)
			}
		})
	}
}

func TestMarshalDurationStyle(t *testing.T) {
	for _, tt := range []struct {
		d    float64
		want string
	}{
		{3e9, "3s"}, {90e9, "1m30s"}, {250e6, "250ms"}, {3600e9, "1h"}, {120e9, "2m"}, {3605e9, "1h0m5s"}, {0, "0s"},
	} {
		s := &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{{Name: "c", ConnectTimeout: durationpb.New(durationOf(tt.d))}}}
		want := "clusters:\n  - name: c\n    connect_timeout: " + tt.want + "\n"
		if got := string(mustMarshal(t, s)); got != want {
			t.Errorf("Marshal(%v):\n got: %q\nwant: %q", tt.d, got, want)
		}
	}
}

func TestMarshalInvalidDuration(t *testing.T) {
	s := &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{{Name: "c", ConnectTimeout: &durationpb.Duration{Seconds: 1, Nanos: -1}}}}
	if _, err := Marshal(s); err == nil {
		t.Errorf("Marshal of an invalid duration succeeded")
	}
}

func durationOf(ns float64) time.Duration { return time.Duration(ns) }
