package snapshot

import (
	"fmt"
	"slices"
	"strings"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Warnings are the settings of a valid snapshot that can have no effect
// where they are, as HAProxy warns at start of keywords its proxy's mode
// ignores:
//
//   - a hash key other than SOURCE_IP, an outlier_detection's
//     consecutive_5xx, or http2 without an HTTP health check (which it
//     would make speak HTTP/2), on a cluster that only TCP listeners
//     route to: TCP sessions have no request to hash (they are balanced
//     round robin), no status to count and no requests to send;
//   - a TCP listener's inspect_timeout when none of its rules matches on
//     sni or tls: the listener reads nothing before it picks.
//
// A snapshot with warnings is valid and is applied as it is: a warning
// refused would turn a snapshot stored before the warning existed into
// one the nodes refuse. Warnings are in document order; nil when there
// are none.
func Warnings(s *sluicev1.Snapshot) Errors {
	var warns Errors
	add := func(path, format string, args ...any) {
		warns = append(warns, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	// Which protocols reach each cluster, and through which TCP listeners.
	reachedByHTTP := map[string]bool{}
	reachedByTCP := map[string][]string{}
	for i, l := range s.GetListeners() {
		tcp := l.GetProtocol() == sluicev1.Protocol_PROTOCOL_TCP
		reach := func(cluster string) {
			if cluster == "" {
				return
			}
			if !tcp {
				reachedByHTTP[cluster] = true
			} else if names := reachedByTCP[cluster]; !slices.Contains(names, l.GetName()) {
				reachedByTCP[cluster] = append(names, l.GetName())
			}
		}
		reach(l.GetDefaultCluster())
		inspects := false
		for _, r := range l.GetRules() {
			reach(r.GetRoute())
			inspects = inspects || matchesHello(r.GetMatch())
		}
		if tcp && l.GetTcp().GetInspectTimeout() != nil && !inspects {
			add(fmt.Sprintf("listeners[%d].tcp.inspect_timeout", i),
				"has no effect: no rule of the listener matches on sni or tls, so it reads nothing before it picks a cluster")
		}
	}
	for i, c := range s.GetClusters() {
		via := reachedByTCP[c.GetName()]
		if len(via) == 0 || reachedByHTTP[c.GetName()] {
			continue
		}
		only := fmt.Sprintf("only TCP listeners route to cluster %q (%s)", c.GetName(), strings.Join(via, ", "))
		if c.GetLbPolicy() == sluicev1.LbPolicy_LB_POLICY_HASH && c.Hash != nil {
			if k := c.GetHash().GetKey(); k != sluicev1.HashKey_HASH_KEY_SOURCE_IP {
				add(fmt.Sprintf("clusters[%d].hash.key", i),
					"%s hashes HTTP requests, and %s: their sessions are balanced round robin (SOURCE_IP hashes TCP sessions)", shortEnum(k), only)
			}
		}
		if c.GetHttp2() && c.GetHealthCheck().GetHttp() == nil {
			add(fmt.Sprintf("clusters[%d].http2", i),
				"has no effect: it says how HTTP requests are sent, and %s, whose bytes pass as they are", only)
		}
		if od := c.GetOutlierDetection(); od != nil {
			p := fmt.Sprintf("clusters[%d].outlier_detection", i)
			switch {
			case od.ConsecutiveConnectFailures != nil && od.GetConsecutiveConnectFailures() == 0:
				add(p, "never ejects: consecutive_connect_failures is 0, and consecutive_5xx counts HTTP responses, while %s", only)
			case od.GetConsecutive_5Xx() > 0:
				add(p+".consecutive_5xx", "has no effect: it counts HTTP responses, and %s; there consecutive_connect_failures ejects", only)
			}
		}
	}
	sortDocOrder(warns, s.ProtoReflect().Descriptor())
	return warns
}

// matchesHello reports whether m, or any match it holds, looks at the TLS
// ClientHello (sni, tls).
func matchesHello(m *sluicev1.Match) bool {
	if m == nil {
		return false
	}
	if m.Sni != nil || m.Tls != nil || matchesHello(m.GetNot()) {
		return true
	}
	return slices.ContainsFunc(m.GetAll(), matchesHello) || slices.ContainsFunc(m.GetAny(), matchesHello)
}
