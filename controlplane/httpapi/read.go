package httpapi

import (
	"cmp"
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluice-lb/sluice/controlplane/configapi"
	"github.com/sluice-lb/sluice/controlplane/groups"
	"github.com/sluice-lb/sluice/controlplane/history"
	"github.com/sluice-lb/sluice/internal/reasons"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// rateWindow is how many whole seconds of history the rates shown beside
// clusters and endpoints average: short enough to follow a change, long
// enough not to flicker.
const rateWindow = 10

// fleetJSON answers GET /api/fleet.
type fleetJSON struct {
	// Version is the current version of the configuration, across groups.
	Version uint64     `json:"version"`
	Nodes   []nodeJSON `json:"nodes"`
	// Incomplete says why Nodes lacks the other replicas' nodes, when it
	// does (ListNodesResponse.incomplete).
	Incomplete string `json:"incomplete,omitempty"`
	// Stale says why the versions are those this control plane sends its
	// nodes rather than the store's, when they are
	// (ListGroupsResponse.store_unreachable).
	Stale string `json:"stale,omitempty"`
	// Disagreements say what another replica on the etcd has otherwise
	// than this one (ListReplicasResponse.disagreements).
	Disagreements []string `json:"disagreements,omitempty"`
}

type nodeJSON struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels"`
	// Group is the node group its labels put it in; empty when none does,
	// and GroupProblem says why.
	Group        string `json:"group"`
	GroupProblem string `json:"group_problem,omitempty"`
	Build        string `json:"build,omitempty"`
	// State is CONNECTED, DRAINING or DISCONNECTED.
	State          string    `json:"state"`
	Peer           string    `json:"peer,omitempty"`
	ConnectedSince time.Time `json:"connected_since"`
	LastSeen       time.Time `json:"last_seen"`
	AppliedVersion uint64    `json:"applied_version"`
	SentVersion    uint64    `json:"sent_version"`
	// NackedVersion and NackError are the last version the node refused,
	// and why, until it applies that version or a newer one.
	NackedVersion uint64 `json:"nacked_version,omitempty"`
	NackError     string `json:"nack_error,omitempty"`
	// WantVersion is the version of the node's group, the one it should
	// run (0: none); InSync says it runs it.
	WantVersion uint64 `json:"want_version"`
	InSync      bool   `json:"in_sync"`
	// Active and Conns sum the node's endpoints in its latest report,
	// while it is connected; 0 once it is gone.
	Active int64         `json:"active"`
	Conns  int64         `json:"conns"`
	Rate   history.Point `json:"rate"`
	// Replica is the control-plane replica the node's streams are on,
	// with replicas on one etcd. StatsReplica is set when that is not the
	// one asked: the node's traffic is reported there (as GetStats said,
	// which read the fleet apart from ListNodes), and Active, Conns and
	// Rate are not known here.
	Replica      string `json:"replica,omitempty"`
	StatsReplica string `json:"stats_replica,omitempty"`
}

// disagreements are where the replicas disagree (ListReplicas), asked at
// most every replicasRefresh; while etcd is away, none (the fleet's
// incomplete note says it is away).
func (a *API) disagreements(r *http.Request) []string {
	d := &a.disagree
	d.Lock()
	defer d.Unlock()
	if now := a.now(); d.at.IsZero() || now.Sub(d.at) >= replicasRefresh {
		resp, err := call(a, r, sluicev1.ConfigService_ListReplicas_FullMethodName, &sluicev1.ListReplicasRequest{}, a.config.ListReplicas)
		d.at, d.said = now, nil
		if err == nil {
			d.said = resp.GetDisagreements()
		}
	}
	return d.said
}

func (a *API) fleet(w http.ResponseWriter, r *http.Request) {
	var (
		gs                      *sluicev1.ListGroupsResponse
		nodes                   *sluicev1.ListNodesResponse
		st                      *sluicev1.GetStatsResponse
		disagreements           []string
		err, nodesErr, statsErr error
	)
	alongside(func(through func()) {
		gs, err = call(a, r, sluicev1.ConfigService_ListGroups_FullMethodName, &sluicev1.ListGroupsRequest{}, passing(through, a.config.ListGroups))
	}, func() {
		nodes, nodesErr = call(a, r, sluicev1.ConfigService_ListNodes_FullMethodName, &sluicev1.ListNodesRequest{}, a.config.ListNodes)
	}, func() {
		st, statsErr = call(a, r, sluicev1.ConfigService_GetStats_FullMethodName, &sluicev1.GetStatsRequest{}, a.config.GetStats)
	}, func() {
		disagreements = a.disagreements(r)
	})
	if err := cmp.Or(err, nodesErr, statsErr); err != nil {
		writeStatus(w, err)
		return
	}
	// A node that went away holds no requests or sockets any more,
	// whatever its last report said (the charts drop them too).
	gauges := map[string][2]int64{}
	elsewhere := map[string]string{}
	for _, n := range st.GetNodes() {
		if !n.GetConnected() {
			continue
		}
		if n.GetReplica() != "" {
			elsewhere[n.GetNodeId()] = n.GetReplica()
			continue
		}
		var g [2]int64
		for _, ep := range n.GetEndpoints() {
			g[0] += ep.GetActive()
			g[1] += ep.GetConns()
		}
		gauges[n.GetNodeId()] = g
	}
	byName := map[string]*sluicev1.GroupStatus{}
	for _, g := range gs.GetGroups() {
		byName[g.GetName()] = g
	}
	out := fleetJSON{Version: gs.GetVersion(), Nodes: []nodeJSON{}, Incomplete: nodes.GetIncomplete(), Stale: gs.GetStoreUnreachable(),
		Disagreements: disagreements}
	for _, n := range nodes.GetNodes() {
		state := "DISCONNECTED"
		switch {
		case n.GetConnected() && n.GetDraining():
			state = "DRAINING"
		case n.GetConnected():
			state = "CONNECTED"
		}
		g := gauges[n.GetId()]
		want := configapi.WantVersion(byName[n.GetGroup()], n.GetId())
		out.Nodes = append(out.Nodes, nodeJSON{
			ID: n.GetId(), Labels: orEmpty(n.GetLabels()), Group: n.GetGroup(), GroupProblem: n.GetGroupProblem(),
			Build: n.GetBuildVersion(), State: state,
			Peer: n.GetPeer(), ConnectedSince: n.GetConnectedSince().AsTime(), LastSeen: n.GetLastSeen().AsTime(),
			AppliedVersion: n.GetAckedVersion(), SentVersion: n.GetSentVersion(),
			NackedVersion: n.GetNackedVersion(), NackError: n.GetNackError(),
			WantVersion: want,
			InSync:      n.GetConnected() && want != 0 && n.GetAckedVersion() == want,
			Active:      g[0], Conns: g[1],
			Rate:    a.rate(history.NodeKey(n.GetId())),
			Replica: n.GetReplica(), StatsReplica: elsewhere[n.GetId()],
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// alongside runs the calls of one answer. It calls first, which calls
// through once the interceptors have let it through to its method; the
// others then run beside it. Each may wait on etcd (the store, the other
// replicas' nodes), so while etcd is away the answer waits as long as
// the longest of them rather than their sum. A call the interceptors
// refuse is the answer, as when the calls ran one after another, and the
// others are not made: one refusal, and one "call refused" in the log.
func alongside(first func(through func()), others ...func()) {
	passed, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		first(func() { close(passed) })
	}()
	select {
	case <-passed:
	case <-done:
		// A quick first call may be done as soon as it passed, and
		// select picks either then: only one that never passed stops.
		select {
		case <-passed:
		default:
			return
		}
	}
	var wg sync.WaitGroup
	for _, f := range others {
		wg.Go(f)
	}
	wg.Wait()
	<-done
}

// passing is method, calling through first: the first call of alongside.
func passing[Req, Resp any](through func(), method func(context.Context, Req) (Resp, error)) func(context.Context, Req) (Resp, error) {
	return func(ctx context.Context, req Req) (Resp, error) {
		through()
		return method(ctx, req)
	}
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// rate averages the last rateWindow seconds of k. Its Active and Conns are
// those of the last second.
func (a *API) rate(k history.Key) history.Point {
	s, _ := a.history.Series(k, rateWindow, a.now())
	var sum history.Point
	for _, p := range s.Points {
		sum.Requests += p.Requests
		sum.Errors += p.Errors
		sum.BytesIn += p.BytesIn
		sum.BytesOut += p.BytesOut
	}
	n := float32(len(s.Points))
	last := s.Points[len(s.Points)-1]
	return history.Point{
		Requests: sum.Requests / n, Errors: sum.Errors / n,
		BytesIn: sum.BytesIn / n, BytesOut: sum.BytesOut / n,
		Active: last.Active, Conns: last.Conns,
	}
}

// clustersJSON answers GET /api/clusters?group=G: the clusters of the
// group's current snapshot (default: group default), in its order, each
// endpoint with its admin state and weight from the snapshot and its
// health and counters from the latest report of each node of the group.
type clustersJSON struct {
	// Group is the group shown; Groups names every group, for a choice.
	Group    string        `json:"group"`
	Groups   []string      `json:"groups"`
	Version  uint64        `json:"version"`
	Clusters []clusterJSON `json:"clusters"`
	// Stale says why the clusters are those of the version this control
	// plane sends its nodes rather than the store's, when they are
	// (GetResponse.store_unreachable).
	Stale string `json:"stale,omitempty"`
}

type clusterJSON struct {
	Name      string         `json:"name"`
	LBPolicy  string         `json:"lb_policy"`
	Rate      history.Point  `json:"rate"`
	Endpoints []endpointJSON `json:"endpoints"`
}

type endpointJSON struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// State is the admin state the snapshot gives: ACTIVE, DRAINING or
	// DISABLED.
	State  string `json:"state"`
	Weight uint32 `json:"weight"`
	Backup bool   `json:"backup"`
	// Health is what every connected node that reports the endpoint says
	// (UP, DOWN, DRAINING, DISABLED, EJECTED, CHECKING), MIXED when they
	// disagree, UNKNOWN when none reports it.
	Health string `json:"health"`
	// Requests and Errors sum the nodes' latest reports, Active and
	// Conns those of the connected nodes (a node that went away holds
	// nothing any more); Errors counts 5xx responses and failed connects.
	Active   int64              `json:"active"`
	Conns    int64              `json:"conns"`
	Requests uint64             `json:"requests"`
	Errors   uint64             `json:"errors"`
	Rate     history.Point      `json:"rate"`
	Nodes    []endpointNodeJSON `json:"nodes"`
}

// endpointNodeJSON is one endpoint as one node reported it.
type endpointNodeJSON struct {
	Node      string `json:"node"`
	Connected bool   `json:"connected"`
	Health    string `json:"health"`
	Detail    string `json:"detail,omitempty"`
	Active    int64  `json:"active"`
	Conns     int64  `json:"conns"`
	Requests  uint64 `json:"requests"`
	Errors    uint64 `json:"errors"`
}

func (a *API) clusters(w http.ResponseWriter, r *http.Request) {
	group := cmp.Or(r.URL.Query().Get("group"), groups.Default)
	var (
		cur                  *sluicev1.GetResponse
		gs                   *sluicev1.ListGroupsResponse
		st                   *sluicev1.GetStatsResponse
		err, gsErr, statsErr error
	)
	alongside(func(through func()) {
		cur, err = call(a, r, sluicev1.ConfigService_Get_FullMethodName, &sluicev1.GetRequest{Group: group}, passing(through, a.config.Get))
	}, func() {
		gs, gsErr = call(a, r, sluicev1.ConfigService_ListGroups_FullMethodName, &sluicev1.ListGroupsRequest{}, a.config.ListGroups)
	}, func() {
		st, statsErr = call(a, r, sluicev1.ConfigService_GetStats_FullMethodName, &sluicev1.GetStatsRequest{}, a.config.GetStats)
	})
	if err := cmp.Or(err, gsErr, statsErr); err != nil {
		writeStatus(w, err)
		return
	}
	type epKey struct{ cluster, endpoint string }
	seen := map[epKey][]endpointNodeJSON{}
	for _, n := range st.GetNodes() {
		if n.GetGroup() != group {
			// Another group may have a cluster of the same name, with
			// other endpoints.
			continue
		}
		for _, ep := range n.GetEndpoints() {
			k := epKey{ep.GetCluster(), ep.GetEndpoint()}
			seen[k] = append(seen[k], endpointNodeJSON{
				Node: n.GetNodeId(), Connected: n.GetConnected(),
				Health: trimEnum(ep.GetHealth().String(), "ENDPOINT_HEALTH_"), Detail: ep.GetDetail(),
				Active: ep.GetActive(), Conns: ep.GetConns(), Requests: ep.GetRequests(),
				Errors: ep.GetResponses_5Xx() + ep.GetConnectErrors(),
			})
		}
	}
	out := clustersJSON{Group: group, Groups: []string{}, Version: cur.GetInfo().GetVersion(), Clusters: []clusterJSON{}, Stale: cur.GetStoreUnreachable()}
	for _, g := range gs.GetGroups() {
		out.Groups = append(out.Groups, g.GetName())
	}
	for _, c := range cur.GetSnapshot().GetClusters() {
		policy := c.GetLbPolicy()
		if policy == sluicev1.LbPolicy_LB_POLICY_UNSPECIFIED {
			policy = sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN // what nodes run for it
		}
		cj := clusterJSON{
			Name: c.GetName(), LBPolicy: trimEnum(policy.String(), "LB_POLICY_"),
			Rate: a.rate(history.ClusterKey(group, c.GetName())), Endpoints: []endpointJSON{},
		}
		for _, ep := range c.GetEndpoints() {
			ej := endpointJSON{
				Name: ep.GetName(), Address: ep.GetAddress(),
				State:  trimEnum(ep.GetState().String(), "ADMIN_STATE_"),
				Weight: snapshot.Weight(ep), Backup: ep.GetBackup(), Health: "UNKNOWN",
				Rate:  a.rate(history.EndpointKey(group, c.GetName(), ep.GetName())),
				Nodes: seen[epKey{c.GetName(), ep.GetName()}],
			}
			if ej.State == "UNSPECIFIED" {
				ej.State = "ACTIVE"
			}
			if ej.Nodes == nil {
				ej.Nodes = []endpointNodeJSON{}
			}
			for _, n := range ej.Nodes {
				ej.Requests += n.Requests
				ej.Errors += n.Errors
				if !n.Connected {
					continue
				}
				ej.Active += n.Active
				ej.Conns += n.Conns
				switch ej.Health {
				case "UNKNOWN":
					ej.Health = n.Health
				case n.Health:
				default:
					ej.Health = "MIXED"
				}
			}
			cj.Endpoints = append(cj.Endpoints, ej)
		}
		out.Clusters = append(out.Clusters, cj)
	}
	writeJSON(w, http.StatusOK, out)
}

// trimEnum turns a proto enum name into the short form users type:
// ENDPOINT_HEALTH_UP -> UP.
func trimEnum(name, prefix string) string { return strings.TrimPrefix(name, prefix) }

// seriesJSON answers GET /api/history: one array per field, one element
// per second from Start, the shape a chart draws from.
type seriesJSON struct {
	Start    time.Time `json:"start"`
	Step     int       `json:"step_seconds"`
	Requests []float32 `json:"requests"`
	Errors   []float32 `json:"errors"`
	BytesIn  []float32 `json:"bytes_in"`
	BytesOut []float32 `json:"bytes_out"`
	Active   []float32 `json:"active"`
	Conns    []float32 `json:"conns"`
}

func (a *API) historySeries(w http.ResponseWriter, r *http.Request) {
	q, err := parseHistoryQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	// History is stats over time: reading it is a GetStats as far as the
	// interceptors (and the permission checks they will make) go. A series
	// never recorded is either one with no traffic yet (zeros) or a typo:
	// NOT_FOUND names the groups, clusters, endpoints or nodes there are,
	// as sluicectl stats does.
	s, err := call(a, r, sluicev1.ConfigService_GetStats_FullMethodName, q.names,
		func(ctx context.Context, names *sluicev1.GetStatsRequest) (history.Series, error) {
			s, ok := a.history.Series(q.key, q.seconds, a.now())
			switch {
			case ok:
			case names.GetCluster() != "":
				return s, a.inGroup(ctx, q)
			default:
				if _, err := a.config.GetStats(ctx, names); status.Code(err) == codes.NotFound {
					return s, err
				}
			}
			return s, nil
		})
	if err != nil {
		writeStatus(w, err)
		return
	}
	out := seriesJSON{Start: s.Start, Step: 1}
	for _, p := range s.Points {
		out.Requests = append(out.Requests, p.Requests)
		out.Errors = append(out.Errors, p.Errors)
		out.BytesIn = append(out.BytesIn, p.BytesIn)
		out.BytesOut = append(out.BytesOut, p.BytesOut)
		out.Active = append(out.Active, p.Active)
		out.Conns = append(out.Conns, p.Conns)
	}
	writeJSON(w, http.StatusOK, out)
}

// inGroup returns nil when the cluster of q (and its endpoint, if any) is
// in the snapshot of q's group, else NOT_FOUND naming what is wrong: the
// group, the cluster or the endpoint. A group's snapshot that this control
// plane sends its nodes (WithPublished) needs no asking, which would read
// etcd: the dashboard asks at every refresh for the series of clusters
// with no traffic yet, and with replicas for those that only other
// replicas' nodes report.
func (a *API) inGroup(ctx context.Context, q historyQuery) error {
	cluster := q.names.GetCluster()
	if a.published != nil {
		_, cfg := a.published()
		if g := groups.Find(cfg, q.group); g != nil && groups.HasCluster(g, cluster) {
			return hasEndpoint(g, cluster, q.endpoint)
		}
	}
	// Not sent here, or not yet: the store knows every group.
	cur, err := a.config.Get(ctx, &sluicev1.GetRequest{Group: q.group})
	if err != nil {
		return err // NOT_FOUND for a group that does not exist
	}
	g := &sluicev1.Group{Name: q.group, Snapshot: cur.GetSnapshot()}
	if groups.HasCluster(g, cluster) {
		return hasEndpoint(g, cluster, q.endpoint)
	}
	if _, err := a.config.GetStats(ctx, q.names); status.Code(err) == codes.NotFound {
		return err // in no group's snapshot: it says which names there are
	}
	return configapi.NotInGroup(g, cluster)
}

// hasEndpoint returns nil when endpoint is "" or one of cluster's in
// group g, else NOT_FOUND naming its endpoints.
func hasEndpoint(g *sluicev1.Group, cluster, endpoint string) error {
	if endpoint == "" {
		return nil
	}
	return configapi.UnknownEndpoint(&sluicev1.FleetConfig{Groups: []*sluicev1.Group{g}}, cluster, endpoint)
}

// connJSON is one connection record of GET /api/conns.
type connJSON struct {
	Node     string        `json:"node"`
	Listener string        `json:"listener"`
	Client   string        `json:"client"`
	Cluster  string        `json:"cluster"`
	Endpoint string        `json:"endpoint"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	BytesIn  uint64        `json:"bytes_in"`
	BytesOut uint64        `json:"bytes_out"`
	Requests uint64        `json:"requests"`
	// Reason is why it ended, as sluicectl conns writes it: client_closed,
	// server_timeout, drained, …
	Reason string `json:"reason"`
	// FailedRequests counts the requests the node answered with an error
	// (a 502, 503, 504 or a rule's refusal), and Failures are their
	// reasons, each once (empty when none failed).
	FailedRequests uint64   `json:"failed_requests"`
	Failures       []string `json:"failures"`
	// Rule is the rule that decided the session, or the latest request a
	// rule decided; empty when none did.
	Rule string `json:"rule"`
}

// connsJSON answers GET /api/conns.
type connsJSON struct {
	Conns []connJSON `json:"conns"`
	// ReportedElsewhere names the other control-plane replicas whose nodes
	// (connected now, and matching the filters) report their connections
	// there: Conns lacks those records (ListConnsResponse.reported_elsewhere).
	ReportedElsewhere []string `json:"reported_elsewhere"`
}

func (a *API) conns(w http.ResponseWriter, r *http.Request) {
	req, err := parseConnsQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	resp, err := call(a, r, sluicev1.ConfigService_ListConns_FullMethodName, req, a.config.ListConns)
	if err != nil {
		writeStatus(w, err)
		return
	}
	out := []connJSON{}
	for _, rec := range resp.GetRecords() {
		out = append(out, connJSON{
			Node: rec.GetNodeId(), Listener: rec.GetListener(), Client: rec.GetClientAddress(),
			Cluster: rec.GetCluster(), Endpoint: rec.GetEndpoint(),
			Start: rec.GetStart().AsTime(), Duration: rec.GetDuration().AsDuration(),
			BytesIn: rec.GetBytesIn(), BytesOut: rec.GetBytesOut(), Requests: rec.GetRequests(),
			Reason:         reasons.Name(rec.GetCloseReason()),
			FailedRequests: rec.GetFailedRequests(), Failures: reasons.NameEach(rec.GetFailures()),
			Rule: rec.GetRule(),
		})
	}
	writeJSON(w, http.StatusOK, connsJSON{Conns: out, ReportedElsewhere: orNone(resp.GetReportedElsewhere())})
}

func orNone(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// firstOf returns the first n of list, or all of it for n < 0.
func firstOf(list []string, n int) []string {
	if n < 0 || n >= len(list) {
		return list
	}
	return list[:n]
}

// versionJSON is one stored version of GET /api/versions, as sluicectl
// history -o json gives it.
type versionJSON struct {
	Version uint64    `json:"version"`
	Created time.Time `json:"created"`
	Author  string    `json:"author"`
	Comment string    `json:"comment"`
	// Group is the node group whose snapshot or selector it changed.
	Group   string   `json:"group"`
	Changes []string `json:"changes"`
	// ChangesTotal counts the version's changes, of which Changes lists
	// the first max_changes.
	ChangesTotal int `json:"changes_total"`
	// RefusedBy is how many nodes refused it, of which Refusals lists the
	// first 10, the earliest first.
	RefusedBy uint32        `json:"refused_by"`
	Refusals  []refusalJSON `json:"refusals"`
	// Fingerprint is the snapshot.Fingerprint of what the version sent its
	// group's nodes, in base64 as protojson writes it; none after a
	// group's deletion, nor on a version stored before fingerprints.
	Fingerprint []byte `json:"fingerprint,omitempty"`
}

type refusalJSON struct {
	Node  string    `json:"node"`
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

// versionsJSON answers GET /api/versions.
type versionsJSON struct {
	// Current is the newest version, or with ?group, the version that
	// group's nodes run (HistoryResponse.current).
	Current  uint64        `json:"current"`
	Versions []versionJSON `json:"versions"`
}

func (a *API) versions(w http.ResponseWriter, r *http.Request) {
	req, maxChanges, err := parseVersionsQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	resp, err := call(a, r, sluicev1.ConfigService_History_FullMethodName, req, a.config.History)
	if err != nil {
		writeStatus(w, err)
		return
	}
	out := versionsJSON{Current: resp.GetCurrent(), Versions: []versionJSON{}}
	for _, v := range resp.GetVersions() {
		refusals := []refusalJSON{}
		for _, rf := range v.GetRefusals() {
			refusals = append(refusals, refusalJSON{Node: rf.GetNode(), Error: rf.GetError(), At: rf.GetAt().AsTime()})
		}
		out.Versions = append(out.Versions, versionJSON{
			Version: v.GetVersion(), Created: v.GetCreated().AsTime(), Author: v.GetAuthor(), Comment: v.GetComment(),
			Group: cmp.Or(v.GetGroup(), groups.Default), Changes: orNone(firstOf(v.GetChanges(), maxChanges)), ChangesTotal: len(v.GetChanges()),
			RefusedBy: v.GetRefusedBy(), Refusals: refusals, Fingerprint: v.GetFingerprint(),
		})
	}
	writeJSON(w, http.StatusOK, out)
}
