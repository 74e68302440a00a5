// Package fleetview shares the fleet between control-plane replicas that use
// one etcd, so that every replica lists every node: `sluicectl nodes` and
// `apply --wait` give the same answer whichever replica they ask.
//
// Each replica's fleet registry knows the nodes whose streams it serves. A
// View observes that registry and writes one small record per node, a
// NodeStatus in protobuf JSON, under
//
//	PREFIX nodes/REPLICA/NODE-ID
//
// attached to the replica's lease: when a replica dies or loses etcd, its
// records vanish once the lease expires (TTL), and its nodes show again as
// they reconnect to another replica. Records change when a node connects,
// is sent a version, ACKs, NACKs, begins to drain or disconnects, never per
// heartbeat, and writes are coalesced and batched, so a fleet-wide apply
// costs a few transactions, not one per node.
//
// A replica's name is its own: while a View runs it holds the key
//
//	PREFIX replicas/REPLICA
//
// on the same lease, and Claim refuses a name another live replica holds.
// Two replicas of one name would each take the other's records for its
// own (Nodes skips them) and hide each other's nodes. The key holds
// a description of the holder for that refusal, its seat (Options.Seat),
// and the settings all replicas must share (Options.Settings), which
// Disagreements compares.
//
// Nodes merges the local registry (fresh, authoritative for this replica's
// nodes) with the other replicas' records read from etcd. A node may appear
// under several replicas for a moment (it moved; the old replica has not
// noticed yet, or died and its lease has not expired): the connected record
// of the latest connection wins, or, of disconnected ones, the one last
// seen. Connections are ordered by the etcd revision that first recorded
// each (connected_revision), not by connected_since: each replica stamps
// that by its own clock, and one running ahead would keep a dead replica's
// record on top until its lease expired.
package fleetview

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/internal/lease"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// DefaultTTL is the lease of a replica's records when Options.TTL is 0:
// how long the nodes of a dead replica stay listed as it left them.
//
// It is longer than a node takes to give up on a replica that stopped
// answering without closing its connections (a frozen process or VM, a
// host cut off): sluice-dp's keepalive notices within 15 s and the node
// reconnects elsewhere within a second or two. A replica's lease can run
// out as soon as two thirds of its TTL after its last renewal, so with a
// TTL below about 25 s such a replica's nodes would vanish from every
// list, and apply --wait would report the other nodes alone, while they
// still served the old version.
const DefaultTTL = 30 * time.Second

const (
	// batch is the most records written in one transaction (etcd refuses
	// more than 128 operations by default).
	batch = 100
	// callTimeout bounds each etcd call; readTimeout bounds the read of
	// Nodes, which the config API calls without a deadline of its own.
	callTimeout = 5 * time.Second
	readTimeout = 2 * time.Second
	retryWait   = 500 * time.Millisecond
)

// Options configure a View.
type Options struct {
	// Prefix is the etcd store's prefix; records go under Prefix+"nodes/".
	Prefix string
	// Replica names this control plane among the replicas; it must be
	// unique among them and non-empty.
	Replica string
	// TTL of the replica's lease, rounded up to whole seconds; 0:
	// DefaultTTL.
	TTL time.Duration
	// Holder describes this replica in its name's key, for the error of
	// another that claims the same name (empty: its pid and host name).
	Holder string
	// Seat, when not empty, says where this replica runs such that no
	// two live replicas can share it: the machine's boot, the network
	// namespace and the address the replica listens on, which the
	// listener holds. A replica whose name's holder has the same seat
	// knows the holder is dead, and takes the name at once instead of
	// waiting for the holder's lease to expire.
	Seat string
	// Settings are what this replica has of the settings every replica
	// of the fleet must share (its TLS, its token key), by name, each as
	// a value that tells one from another without giving it away; they
	// go in its name's key, for the others to compare (Disagreements).
	Settings map[string]string
	// Logger gets the View's complaints (nil: none).
	Logger *slog.Logger
}

// View is one replica's share of the fleet and its view of everyone's.
type View struct {
	client  *clientv3.Client
	local   *fleet.Registry
	dir     string // Prefix + "nodes/"
	replica string
	name    string // the key of the replica's name: Prefix + "replicas/" + replica
	claim   string // the name key's value: a claimRecord in JSON
	seat    string
	ttl     time.Duration
	log     *slog.Logger
	// settings are Options.Settings.
	settings map[string]string

	mu    sync.Mutex
	dirty map[string]struct{} // node ids whose record is behind the registry
	wake  chan struct{}       // capacity 1: something is dirty
	conns map[string]recorded // node id: the connection its record holds

	claimed *concurrency.Session // from Claim, until Run takes it or Close revokes it
}

// recorded is a connection of a node to this replica as its record holds
// it: since when, and the revision that first wrote it.
type recorded struct {
	since time.Time
	rev   int64
}

// New returns a view that shares local's nodes; it observes local (see
// fleet.Registry.Observe), so call it before local is used. Records are
// written while Run runs.
func New(client *clientv3.Client, local *fleet.Registry, opts Options) (*View, error) {
	if opts.Replica == "" {
		return nil, errors.New("fleetview: empty replica name")
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Holder == "" {
		host, _ := os.Hostname()
		opts.Holder = fmt.Sprintf("pid %d on %s", os.Getpid(), host)
	}
	claim, err := json.Marshal(claimRecord{Holder: opts.Holder, Seat: opts.Seat, Settings: opts.Settings})
	if err != nil {
		return nil, err
	}
	v := &View{
		client:   client,
		claim:    string(claim),
		local:    local,
		dir:      opts.Prefix + "nodes/",
		replica:  opts.Replica,
		name:     opts.Prefix + "replicas/" + opts.Replica,
		seat:     opts.Seat,
		settings: opts.Settings,
		ttl:      opts.TTL,
		log:      opts.Logger,
		dirty:    make(map[string]struct{}),
		wake:     make(chan struct{}, 1),
		conns:    make(map[string]recorded),
	}
	local.Observe(v.changed)
	return v, nil
}

// changed is the registry's observer: it only takes note.
func (v *View) changed(id string) {
	v.mu.Lock()
	v.dirty[id] = struct{}{}
	v.mu.Unlock()
	v.poke()
}

// poke wakes the writer.
func (v *View) poke() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

func (v *View) key(replica, id string) string { return v.dir + replica + "/" + id }

// ErrNameTaken is Claim's error when another live replica holds the name.
var ErrNameTaken = errors.New("the replica name is taken")

// claimRecord is the value of a replica's name key.
type claimRecord struct {
	Holder   string            `json:"holder"`
	Seat     string            `json:"seat,omitempty"`
	Settings map[string]string `json:"settings,omitempty"`
}

// Claim takes the replica's name on etcd, for Run to hold. A name that
// another replica holds is refused (ErrNameTaken, saying who holds it)
// as soon as the holder is seen to renew its lease, which a live one does
// every third of its TTL, or else once the name has stayed held for the
// holder's TTL and a second. A replica that died holds its name until its
// lease expires, so a restart in its place waits for that rather than
// fail; a second replica given a live one's name is told within a third
// of the TTL. (etcd extends every lease when its own leader changes,
// which reads as a renewal: a restart then fails, and the next one
// succeeds.)
func (v *View) Claim(ctx context.Context) error {
	session, err := v.session(ctx)
	if err != nil {
		return fmt.Errorf("fleetview: no lease from etcd: %w", err)
	}
	var (
		deadline time.Time        // set once the name is found held
		held     bool             // the name was found held
		watched  clientv3.LeaseID // the holder's lease, then
		left     int64            // its seconds left when last read
		renewed  bool
	)
	for {
		holder, theirs, err := v.take(ctx, session.Lease())
		if err == nil && holder != "" {
			var granted, remaining int64
			granted, remaining, err = v.timeToLive(ctx, theirs)
			switch {
			case err != nil:
			case !held || theirs != watched:
				// First seen, or the name changed hands meanwhile.
				held, watched, left = true, theirs, remaining
				deadline = time.Now().Add(time.Duration(granted)*time.Second + time.Second)
				v.log.Warn("fleet view: the replica name is held on etcd; waiting, up to the holder's lease TTL, to see whether it keeps its lease alive or it expires, in case the holder died",
					"replica", v.replica, "holder", holder, "wait", time.Until(deadline).Round(time.Second))
			default:
				renewed = remaining > left
				left = remaining
			}
		}
		switch {
		case err != nil:
			lease.End(v.client, session)
			return fmt.Errorf("fleetview: cannot claim the replica name %q: %w", v.replica, err)
		case holder == "":
			v.mu.Lock()
			v.claimed = session
			v.mu.Unlock()
			return nil
		case renewed || time.Now().After(deadline) || ctx.Err() != nil:
			lease.End(v.client, session)
			return fmt.Errorf("%w: another replica named %q uses this etcd and prefix (%s)", ErrNameTaken, v.replica, holder)
		}
		sleep(ctx, retryWait)
	}
}

// Disagreement is a setting that another live replica has otherwise than
// this one (Options.Settings).
type Disagreement struct {
	Replica, Holder string // the other replica's name and description
	Setting         string
	Theirs, Ours    string
}

// Disagreements reads the name keys of the other live replicas and returns
// each of this replica's settings that one of them has with another
// value, by replica and setting. A setting a replica's key does not state
// (that replica is older than the setting) is not compared.
func (v *View) Disagreements(ctx context.Context) ([]Disagreement, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	list, err := v.claims(cctx)
	if err != nil {
		return nil, err
	}
	return v.disagreements(list), nil
}

// ReplicaInfo is a live replica as its name key describes it, with the
// nodes it serves.
type ReplicaInfo struct {
	Name, Holder string
	// Settings are those its key states (Options.Settings).
	Settings map[string]string
	// Nodes is how many nodes its records hold connected; this replica's
	// own, its registry's.
	Nodes int
}

// ReplicaList reads the name keys of the live replicas, this one among
// them, and their node records: it returns the replicas, by name, and
// their Disagreements with this one.
func (v *View) ReplicaList(ctx context.Context) ([]ReplicaInfo, []Disagreement, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	list, err := v.claims(cctx)
	if err != nil {
		return nil, nil, err
	}
	records, err := v.client.Get(cctx, v.dir, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, err
	}
	count := map[string]int{}
	for _, kv := range records.Kvs {
		if replica, _, st, ok := v.decode(kv); ok && st.GetConnected() && replica != v.replica {
			count[replica]++
		}
	}
	_, count[v.replica] = v.local.Count(0)
	for i := range list {
		list[i].Nodes = count[list[i].Name]
	}
	return list, v.disagreements(list), nil
}

// claims reads the name keys of the live replicas, this one among them,
// by name; a key that does not decode is left out.
func (v *View) claims(ctx context.Context) ([]ReplicaInfo, error) {
	prefix := strings.TrimSuffix(v.name, v.replica)
	resp, err := v.client.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []ReplicaInfo
	for _, kv := range resp.Kvs {
		var rec claimRecord
		if json.Unmarshal(kv.Value, &rec) != nil {
			continue
		}
		out = append(out, ReplicaInfo{Name: strings.TrimPrefix(string(kv.Key), prefix), Holder: rec.Holder, Settings: rec.Settings})
	}
	slices.SortFunc(out, func(a, b ReplicaInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// disagreements are the settings of this replica that another of list
// states with another value, by replica and setting.
func (v *View) disagreements(list []ReplicaInfo) []Disagreement {
	var out []Disagreement
	for _, r := range list {
		if r.Name == v.replica {
			continue
		}
		for _, setting := range slices.Sorted(maps.Keys(v.settings)) {
			if theirs, ok := r.Settings[setting]; ok && theirs != v.settings[setting] {
				out = append(out, Disagreement{Replica: r.Name, Holder: r.Holder, Setting: setting, Theirs: theirs, Ours: v.settings[setting]})
			}
		}
	}
	return out
}

// timeToLive returns the TTL lease id was granted with and the seconds it
// has left, both 0 for no lease (a key written by hand never expires).
func (v *View) timeToLive(ctx context.Context, id clientv3.LeaseID) (granted, remaining int64, err error) {
	if id == clientv3.NoLease {
		return 0, 0, nil
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := v.client.TimeToLive(cctx, id)
	if err != nil {
		return 0, 0, err
	}
	return resp.GrantedTTL, resp.TTL, nil
}

// session returns a new lease of the View's TTL, kept alive until ctx
// ends or the session is closed.
func (v *View) session(ctx context.Context) (*concurrency.Session, error) {
	ttl := int64((v.ttl + time.Second - 1) / time.Second)
	gctx, cancel := context.WithTimeout(ctx, callTimeout)
	grant, err := v.client.Grant(gctx, ttl)
	cancel()
	if err != nil {
		return nil, err
	}
	return concurrency.NewSession(v.client, concurrency.WithLease(grant.ID), concurrency.WithContext(ctx))
}

// take puts the name's key on lease ours unless another lease holds it, and
// returns the holder's description and lease then. A holder in this
// replica's seat is dead: take revokes its lease, which also deletes the
// node records it left, and takes the name.
func (v *View) take(ctx context.Context, ours clientv3.LeaseID) (holder string, theirs clientv3.LeaseID, err error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := v.client.Txn(cctx).
			If(clientv3.Compare(clientv3.CreateRevision(v.name), "=", 0)).
			Then(clientv3.OpPut(v.name, v.claim, clientv3.WithLease(ours))).
			Else(clientv3.OpGet(v.name)).
			Commit()
		cancel()
		if err != nil || resp.Succeeded {
			return "", 0, err
		}
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 { // released since the comparison
			continue
		}
		theirs = clientv3.LeaseID(kvs[0].Lease)
		if theirs == ours {
			return "", 0, nil
		}
		var rec claimRecord
		if json.Unmarshal(kvs[0].Value, &rec) != nil || rec.Holder == "" {
			rec.Holder = "a replica that gave no description"
		}
		if v.seat == "" || rec.Seat != v.seat || theirs == clientv3.NoLease {
			return rec.Holder, theirs, nil
		}
		v.log.Info("fleet view: the replica name's holder had this replica's seat, so it is dead; taking the name", "replica", v.replica, "holder", rec.Holder)
		cctx, cancel = context.WithTimeout(ctx, callTimeout)
		_, err = v.client.Revoke(cctx, theirs)
		cancel()
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return "", 0, err
		}
	}
}

// Close gives up a name that Claim took and Run never held. Run gives up
// its own when it returns.
func (v *View) Close() {
	v.mu.Lock()
	session := v.claimed
	v.claimed = nil
	v.mu.Unlock()
	if session != nil {
		lease.End(v.client, session)
	}
}

// Run holds the replica's name and writes its records until ctx ends,
// then deletes them (by revoking the lease), so that the nodes show under
// the replicas they move to. It starts on the name Claim took, if it did.
// When the lease is lost (etcd was away longer than the TTL) it takes a
// new one, claims the name again and writes every record again; while
// another replica holds the name meanwhile, it writes none.
func (v *View) Run(ctx context.Context) error {
	v.mu.Lock()
	session := v.claimed
	v.claimed = nil
	v.mu.Unlock()
	taken := false // the last claim found the name taken (said once)
	for ctx.Err() == nil {
		if session == nil {
			var err error
			if session, err = v.session(ctx); err != nil {
				if ctx.Err() == nil {
					v.log.Warn("fleet view: no lease from etcd; trying again", "err", err, "in", retryWait)
					sleep(ctx, retryWait)
				}
				continue
			}
			holder, _, err := v.take(ctx, session.Lease())
			if err != nil || holder != "" {
				lease.End(v.client, session)
				session = nil
				switch {
				case ctx.Err() != nil:
				case err != nil:
					v.log.Warn("fleet view: cannot claim the replica name; trying again", "err", err, "in", retryWait)
				case !taken:
					v.log.Error("fleet view: another replica took this replica's name while it was cut off from etcd; its nodes are not listed by the others until the name is free",
						"replica", v.replica, "holder", holder)
				}
				taken = holder != ""
				sleep(ctx, retryWait)
				continue
			}
			taken = false
		}
		// A new lease holds none of our records: write them all.
		for _, n := range v.local.Nodes() {
			v.changed(n.GetId())
		}
		v.serve(ctx, session)
		lease.End(v.client, session)
		session = nil
		if ctx.Err() == nil {
			v.log.Warn("fleet view: lease lost; writing every record again")
		}
	}
	return ctx.Err()
}

// serve writes dirty records under session's lease until ctx ends or the
// lease is lost.
func (v *View) serve(ctx context.Context, session *concurrency.Session) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-session.Done():
			return
		case <-v.wake:
		}
		if err := v.flush(ctx, session.Lease()); err != nil {
			if ctx.Err() != nil {
				return
			}
			v.log.Warn("fleet view: cannot write node records; trying again", "err", err, "in", retryWait)
			sleep(ctx, retryWait)
			v.poke()
		}
	}
}

// flush writes every dirty record. Ids whose write failed are dirty again.
func (v *View) flush(ctx context.Context, lease clientv3.LeaseID) error {
	v.mu.Lock()
	ids := make([]string, 0, len(v.dirty))
	for id := range v.dirty {
		ids = append(ids, id)
	}
	clear(v.dirty)
	v.mu.Unlock()
	for len(ids) > 0 {
		n := min(len(ids), batch)
		ops := make([]clientv3.Op, 0, n)
		var fresh []*sluicev1.NodeStatus // connections this batch records first
		for _, id := range ids[:n] {
			st, ok := v.local.Node(id)
			if !ok {
				// Forgotten (fleet.Registry.Forget): so is its record.
				ops = append(ops, clientv3.OpDelete(v.key(v.replica, id)))
				v.mu.Lock()
				delete(v.conns, id)
				v.mu.Unlock()
				continue
			}
			if st.GetConnected() && !v.stamp(st) {
				fresh = append(fresh, st)
			}
			raw, err := protojson.Marshal(st)
			if err != nil {
				v.log.Error("fleet view: cannot encode node record", "node", id, "err", err)
				continue
			}
			ops = append(ops, clientv3.OpPut(v.key(v.replica, id), string(raw), clientv3.WithLease(lease)))
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := v.client.Txn(cctx).Then(ops...).Commit()
		cancel()
		if err == nil {
			v.mu.Lock()
			for _, st := range fresh {
				v.conns[st.GetId()] = recorded{st.GetConnectedSince().AsTime(), resp.Header.GetRevision()}
			}
			v.mu.Unlock()
		}
		if err != nil {
			v.mu.Lock()
			for _, id := range ids {
				v.dirty[id] = struct{}{}
			}
			v.mu.Unlock()
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// stamp sets the connected_revision of st, a connected node's status from
// the registry, when its record already holds that connection, and reports
// whether it did.
func (v *View) stamp(st *sluicev1.NodeStatus) bool {
	v.mu.Lock()
	c, ok := v.conns[st.GetId()]
	v.mu.Unlock()
	if !ok || !c.since.Equal(st.GetConnectedSince().AsTime()) {
		return false
	}
	st.ConnectedRevision = c.rev
	return true
}

// Nodes returns every replica's nodes, one status per node id, sorted by id
// (the config API's NodeLister), each naming the replica whose record it is.
// When etcd cannot be read it returns this replica's nodes only, and logs
// why.
func (v *View) Nodes() []*sluicev1.NodeStatus {
	nodes, err := v.FleetNodes()
	if err != nil {
		v.log.Warn("fleet view: cannot read other replicas' nodes; listing this replica's only", "err", err)
	}
	return nodes
}

// FleetNodes is Nodes for a caller that must know whether the list is
// whole: when etcd cannot be read it returns this replica's nodes and why
// the others' are missing.
func (v *View) FleetNodes() ([]*sluicev1.NodeStatus, error) {
	local := v.local.Nodes()
	for _, n := range local {
		n.Replica = v.replica
		if n.GetConnected() {
			v.stamp(n) // when not yet written, the latest connection
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	remote, err := v.remote(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		// What an operator reads (sluicectl nodes): which etcd, not which
		// context.
		return local, store.EtcdUnanswered(v.client.Endpoints(), readTimeout)
	}
	if err != nil {
		return local, fmt.Errorf("fleetview: %w", err)
	}
	best := make(map[string]*sluicev1.NodeStatus, len(local)+len(remote))
	for _, n := range local {
		best[n.GetId()] = n
	}
	for _, n := range remote {
		if cur, ok := best[n.GetId()]; !ok || newer(n, cur) {
			best[n.GetId()] = n
		}
	}
	out := make([]*sluicev1.NodeStatus, 0, len(best))
	for _, n := range best {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *sluicev1.NodeStatus) int { return cmp.Compare(a.GetId(), b.GetId()) })
	return out, nil
}

// Replicas returns, for every node id some replica records, the replicas
// that record it connected. Tests and operators' tools use it to find where
// a node is.
func (v *View) Replicas(ctx context.Context) (map[string][]string, error) {
	resp, err := v.client.Get(ctx, v.dir, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("fleetview: %w", err)
	}
	out := map[string][]string{}
	for _, kv := range resp.Kvs {
		replica, id, st, ok := v.decode(kv)
		if ok && st.GetConnected() {
			out[id] = append(out[id], replica)
		}
	}
	return out, nil
}

// remote reads the records of the other replicas.
func (v *View) remote(ctx context.Context) ([]*sluicev1.NodeStatus, error) {
	resp, err := v.client.Get(ctx, v.dir, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make([]*sluicev1.NodeStatus, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		replica, _, st, ok := v.decode(kv)
		if ok && replica != v.replica {
			out = append(out, st)
		}
	}
	return out, nil
}

// decode splits a record's key into replica and node id (node ids have no
// slash, so the last one separates them) and decodes its value. Fields it
// does not know, from a newer replica, are skipped.
func (v *View) decode(kv *mvccpb.KeyValue) (replica, id string, st *sluicev1.NodeStatus, ok bool) {
	rest, found := strings.CutPrefix(string(kv.Key), v.dir)
	i := strings.LastIndexByte(rest, '/')
	if !found || i < 0 {
		return "", "", nil, false
	}
	replica, id = rest[:i], rest[i+1:]
	st = &sluicev1.NodeStatus{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(kv.Value, st); err != nil || st.GetId() != id {
		v.log.Warn("fleet view: ignoring a corrupt node record", "key", string(kv.Key), "err", err)
		return "", "", nil, false
	}
	st.Replica = replica // the key says, whatever the record does
	if st.GetConnected() && st.GetConnectedRevision() == 0 {
		// The write that first recorded the connection; or a replica
		// older than connected_revision wrote it, and its last write
		// stands in for it.
		st.ConnectedRevision = kv.ModRevision
	}
	return replica, id, st, true
}

// newer reports whether a says more about its node now than b: a connected
// record beats a disconnected one; of two connected, the later connection
// wins (by revision; one not yet written is the latest); of two
// disconnected, the one seen last.
func newer(a, b *sluicev1.NodeStatus) bool {
	if a.GetConnected() != b.GetConnected() {
		return a.GetConnected()
	}
	if a.GetConnected() {
		if ra, rb := written(a), written(b); ra != rb {
			return ra > rb
		}
		return a.GetConnectedSince().AsTime().After(b.GetConnectedSince().AsTime())
	}
	return a.GetLastSeen().AsTime().After(b.GetLastSeen().AsTime())
}

// written is where a connected record's connection stands in the store's
// order: its connected_revision, or after every revision when it has none
// (a local connection whose record is not written yet).
func written(n *sluicev1.NodeStatus) int64 {
	if r := n.GetConnectedRevision(); r != 0 {
		return r
	}
	return math.MaxInt64
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
