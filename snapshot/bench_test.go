package snapshot

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// bigSnapshot is the size of the apply target in DESIGN.md: 10k clusters,
// 100k endpoints.
func bigSnapshot() *sluicev1.Snapshot {
	s := &sluicev1.Snapshot{}
	for i := range 10000 {
		c := &sluicev1.Cluster{Name: fmt.Sprintf("c%d", i), LbPolicy: sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN}
		for j := range 10 {
			c.Endpoints = append(c.Endpoints, &sluicev1.Endpoint{
				Name: fmt.Sprintf("e%d", j), Address: fmt.Sprintf("10.%d.%d.%d:8080", i/256%256, i%256, j), Weight: proto.Uint32(uint32(j)),
			})
		}
		s.Clusters = append(s.Clusters, c)
	}
	for i := range 1000 {
		s.Listeners = append(s.Listeners, &sluicev1.Listener{
			Name: fmt.Sprintf("l%d", i), Address: fmt.Sprintf("127.0.0.1:%d", 20000+i),
			Protocol: sluicev1.Protocol_PROTOCOL_TCP, DefaultCluster: fmt.Sprintf("c%d", i),
		})
	}
	return s
}

func BenchmarkValidateBig(b *testing.B) {
	s := bigSnapshot()
	b.ReportAllocs()
	for b.Loop() {
		if err := Validate(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDiffBig(b *testing.B) {
	old := bigSnapshot()
	new := proto.Clone(old).(*sluicev1.Snapshot)
	new.Clusters[5000].Endpoints[3].Weight = proto.Uint32(200)
	b.ReportAllocs()
	for b.Loop() {
		if got := Diff(old, new); len(got) != 1 {
			b.Fatalf("Diff = %v", got)
		}
	}
}

func BenchmarkParseBig(b *testing.B) {
	y, err := Marshal(bigSnapshot())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(y)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(y, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFingerprintBig(b *testing.B) {
	s := bigSnapshot()
	b.ReportAllocs()
	for b.Loop() {
		Fingerprint(s)
	}
}

func BenchmarkFingerprintBigNoDefaults(b *testing.B) {
	s := bigSnapshot()
	for _, c := range s.Clusters {
		c.LbPolicy = 0
		for _, e := range c.Endpoints {
			e.Weight = proto.Uint32(e.GetWeight() + 2)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		Fingerprint(s)
	}
}
