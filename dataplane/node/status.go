package node

import (
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// healthByName maps EndpointStatus.Health to the wire enum: the names of
// sluicev1.EndpointHealth without their prefix, so a state added to the
// enum needs no change here.
var healthByName = func() map[string]sluicev1.EndpointHealth {
	m := make(map[string]sluicev1.EndpointHealth, len(sluicev1.EndpointHealth_value))
	for name, v := range sluicev1.EndpointHealth_value {
		m[strings.TrimPrefix(name, "ENDPOINT_HEALTH_")] = sluicev1.EndpointHealth(v)
	}
	return m
}()

// Proto is s as the node reports it to the control plane, and as
// sluicectl stats shows it. It is the one place that maps EndpointStatus
// to the wire.
func (s EndpointStatus) Proto() *sluicev1.EndpointStats {
	out := &sluicev1.EndpointStats{
		Cluster:       s.Cluster,
		Endpoint:      s.Name,
		Address:       s.Address,
		Health:        healthByName[s.Health], // UNSPECIFIED if unknown
		Weight:        s.Weight,
		Backup:        s.Backup,
		Active:        s.Inflight,
		Conns:         int64(s.Conns),
		Requests:      s.Stats.Requests,
		BytesIn:       s.Stats.BytesIn,
		BytesOut:      s.Stats.BytesOut,
		ConnectErrors: s.Stats.ConnectErrors,
		Responses_5Xx: s.Stats.Responses5xx,
		Detail:        s.Detail,
		Ejections:     s.Ejections,
	}
	if !s.Since.IsZero() {
		out.Since = timestamppb.New(s.Since)
	}
	return out
}

// EndpointStats is Endpoints in wire form, for the stats reporter.
func (n *Node) EndpointStats() []*sluicev1.EndpointStats {
	eps := n.Endpoints()
	out := make([]*sluicev1.EndpointStats, len(eps))
	for i, s := range eps {
		out[i] = s.Proto()
	}
	return out
}
