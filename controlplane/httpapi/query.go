package httpapi

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-lb/sluice/controlplane/history"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Defaults and bounds of the query parameters.
const (
	defaultHistorySeconds = 300
	defaultConnsLimit     = 50
	maxConnsLimit         = 1000
)

// historyQuery is what GET /api/history asks for.
type historyQuery struct {
	key     history.Key
	seconds int
}

// parseHistoryQuery reads ?cluster=C, ?cluster=C&endpoint=E or ?node=N,
// and seconds=1..3600 (default 300).
func parseHistoryQuery(q url.Values) (historyQuery, error) {
	hq := historyQuery{seconds: defaultHistorySeconds}
	cluster, endpoint, node := q.Get("cluster"), q.Get("endpoint"), q.Get("node")
	switch {
	case node != "" && cluster == "" && endpoint == "":
		hq.key = history.NodeKey(node)
	case node == "" && cluster != "" && endpoint != "":
		hq.key = history.EndpointKey(cluster, endpoint)
	case node == "" && cluster != "" && endpoint == "":
		hq.key = history.ClusterKey(cluster)
	default:
		return hq, fmt.Errorf("history: give cluster, cluster and endpoint, or node")
	}
	if s := q.Get("seconds"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > history.Window {
			return hq, fmt.Errorf("history: seconds must be a whole number from 1 to %d, not %q", history.Window, s)
		}
		hq.seconds = n
	}
	return hq, nil
}

// parseConnsQuery reads the filters of GET /api/conns, named as sluicectl
// conns names them: node, cluster, endpoint, listener, reason (a
// comma-separated list: client_closed,server_timeout), min_duration (a Go
// duration: 1s) and limit (1..1000, default 50).
func parseConnsQuery(q url.Values) (*sluicev1.ListConnsRequest, error) {
	req := &sluicev1.ListConnsRequest{
		NodeId: q.Get("node"), Cluster: q.Get("cluster"), Endpoint: q.Get("endpoint"), Listener: q.Get("listener"),
		Limit: defaultConnsLimit,
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n < 1 || n > maxConnsLimit {
			return nil, fmt.Errorf("conns: limit must be a whole number from 1 to %d, not %q", maxConnsLimit, s)
		}
		req.Limit = uint32(n)
	}
	if s := q.Get("min_duration"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("conns: min_duration must be a duration such as 1s or 250ms, not %q", s)
		}
		req.MinDuration = durationpb.New(d)
	}
	if s := q.Get("reason"); s != "" {
		for name := range strings.SplitSeq(s, ",") {
			name = strings.ToUpper(strings.TrimSpace(name))
			v, ok := sluicev1.CloseReason_value["CLOSE_REASON_"+name]
			if !ok || v == 0 {
				return nil, fmt.Errorf("conns: unknown reason %q (%s)", strings.ToLower(name), reasonNames())
			}
			req.Reasons = append(req.Reasons, sluicev1.CloseReason(v))
		}
	}
	return req, nil
}

// reasonName is how the API writes a close reason, as sluicectl does:
// "client_closed".
func reasonName(r sluicev1.CloseReason) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "CLOSE_REASON_"))
}

// reasonNames lists the reasons a filter may name, in the enum's order.
func reasonNames() string {
	var names []string
	for v := int32(1); ; v++ {
		if _, ok := sluicev1.CloseReason_name[v]; !ok {
			break
		}
		names = append(names, reasonName(sluicev1.CloseReason(v)))
	}
	return "one of: " + strings.Join(names, ", ")
}
