package httpapi

import (
	"cmp"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-lb/sluice/controlplane/groups"
	"github.com/sluice-lb/sluice/controlplane/history"
	"github.com/sluice-lb/sluice/internal/reasons"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Defaults and bounds of the query parameters.
const (
	defaultHistorySeconds = 300
	defaultConnsLimit     = 50
	maxConnsLimit         = 1000
	defaultVersionsLimit  = 20
	maxVersionsLimit      = 1000
)

// historyQuery is what GET /api/history asks for.
type historyQuery struct {
	key     history.Key
	seconds int
	// names is the series' node or cluster, and endpoint its endpoint
	// (or ""), to tell a typo from a series with no traffic yet.
	names    *sluicev1.GetStatsRequest
	endpoint string
	group    string // of a cluster's series
}

// parseHistoryQuery reads ?cluster=C, ?cluster=C&endpoint=E (each with
// &group=G, default the group default) or ?node=N, and seconds=1..3600
// (default 300).
func parseHistoryQuery(q url.Values) (historyQuery, error) {
	hq := historyQuery{seconds: defaultHistorySeconds}
	cluster, endpoint, node := q.Get("cluster"), q.Get("endpoint"), q.Get("node")
	group := cmp.Or(q.Get("group"), groups.Default)
	hq.names = &sluicev1.GetStatsRequest{NodeId: node, Cluster: cluster}
	hq.endpoint, hq.group = endpoint, group
	switch {
	case node != "" && cluster == "" && endpoint == "":
		hq.key = history.NodeKey(node)
	case node == "" && cluster != "" && endpoint != "":
		hq.key = history.EndpointKey(group, cluster, endpoint)
	case node == "" && cluster != "" && endpoint == "":
		hq.key = history.ClusterKey(group, cluster)
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
			v, ok := reasons.Parse(name)
			if !ok {
				return nil, fmt.Errorf("conns: unknown reason %q (one of: %s)",
					strings.ToLower(strings.TrimSpace(name)), strings.Join(reasons.Names(), ", "))
			}
			req.Reasons = append(req.Reasons, v)
		}
	}
	return req, nil
}

// parseVersionsQuery reads the filters of GET /api/versions, named as
// sluicectl history names them: group (empty: every group's versions) and
// limit (1..1000, default 20); and max_changes, the most change lines
// listed of each version (-1 when not given: every one).
func parseVersionsQuery(q url.Values) (*sluicev1.HistoryRequest, int, error) {
	req := &sluicev1.HistoryRequest{Group: q.Get("group"), Limit: defaultVersionsLimit}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n < 1 || n > maxVersionsLimit {
			return nil, 0, fmt.Errorf("versions: limit must be a whole number from 1 to %d, not %q", maxVersionsLimit, s)
		}
		req.Limit = uint32(n)
	}
	maxChanges := -1 // every one
	if s := q.Get("max_changes"); s != "" {
		n, err := strconv.ParseUint(s, 10, 31)
		if err != nil {
			return nil, 0, fmt.Errorf("versions: max_changes must be a whole number, 0 or more, not %q", s)
		}
		maxChanges = int(n)
	}
	return req, maxChanges, nil
}
