package controlplane

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sluice-lb/sluice/controlplane/fleetview"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// agreementCheck is how often a replica compares its security settings
// with the other live replicas' (fleetview.Disagreements).
const agreementCheck = time.Minute

// watchAgreement logs, as an error, each setting that another live
// replica on this etcd has otherwise than this one (auth.Guard.Settings),
// once when it is found, and once more when it is mended; it looks at
// the start and every interval until ctx ends. Replicas whose TLS or
// token key differ split the fleet: a node or token set up for one is
// refused by the other, and one without either lets in whoever reaches
// it.
func (s *Server) watchAgreement(ctx context.Context, interval time.Duration) {
	var told told
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if found, err := s.view.Disagreements(ctx); err == nil {
			news, mended := told.update(implied(found))
			for _, d := range news {
				s.log.Error(disagreementText(d, "this one"), "replica", d.Replica, "holder", d.Holder)
			}
			for _, d := range mended {
				s.log.Info(fmt.Sprintf("replica %s no longer has another %s than this one", d.Replica, d.Setting), "replica", d.Replica)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// implied leaves out of found each replica's client CA disagreement
// when its TLS disagrees too: one of the two has no client CA, which the
// TLS line says.
func implied(found []fleetview.Disagreement) []fleetview.Disagreement {
	tls := map[string]bool{}
	for _, d := range found {
		if d.Setting == "TLS" {
			tls[d.Replica] = true
		}
	}
	return slices.DeleteFunc(slices.Clone(found), func(d fleetview.Disagreement) bool {
		return d.Setting == "client CA" && tls[d.Replica]
	})
}

// told is the disagreements watchAgreement has logged and not seen mended.
type told map[fleetview.Disagreement]bool

// update makes t the disagreements found, and returns those it did not
// hold (to log), and those it held that are not found any more (mended),
// each in found's order or sorted by replica and setting.
func (t *told) update(found []fleetview.Disagreement) (news, mended []fleetview.Disagreement) {
	now := make(told, len(found))
	for _, d := range found {
		now[d] = true
		if !(*t)[d] {
			news = append(news, d)
		}
	}
	for d := range *t {
		if !now[d] {
			mended = append(mended, d)
		}
	}
	slices.SortFunc(mended, func(a, b fleetview.Disagreement) int {
		return cmp.Or(cmp.Compare(a.Replica, b.Replica), cmp.Compare(a.Setting, b.Setting))
	})
	*t = now
	return news, mended
}

// disagreementText says what d means and what to do; this names the
// replica that found it ("this one" in its own log).
func disagreementText(d fleetview.Disagreement, this string) string {
	what := fmt.Sprintf("replica %s has %s %q, %s %q", d.Replica, d.Setting, orNone(d.Theirs), this, orNone(d.Ours))
	switch d.Setting {
	case "TLS":
		return what + ": nodes and sluicectl set up for one cannot connect to the other, and one without TLS lets in whoever reaches it; start every replica with the same --tls-cert, --tls-key and --ca-cert"
	case "client CA":
		return what + ": nodes with certificates from one CA are refused by the other; give every replica the same --ca-cert"
	case "token key":
		return what + ": a token made through one is refused by the other, and one without a token key lets in whoever reaches it; give every replica the same --token-key file"
	}
	return what + ": give every replica the same"
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}

// ListReplicas lists the live replicas for ConfigService.ListReplicas
// (configapi.ReplicaLister): those on its etcd, each with its nodes and
// settings, and the settings others have otherwise than this one; or,
// without etcd, this one alone.
func (s *Server) ListReplicas(ctx context.Context) (*sluicev1.ListReplicasResponse, error) {
	resp := &sluicev1.ListReplicasResponse{AnsweredBy: s.replica, Replicated: s.view != nil}
	if s.view == nil {
		// Named as it would be on etcd: after its address.
		resp.AnsweredBy = cmp.Or(s.replica, replicaName(s.lis.Addr()))
		_, nodes := s.fleet.Count(0)
		resp.Replicas = []*sluicev1.Replica{{Name: resp.AnsweredBy, Description: s.holder, Settings: s.opts.Security.Settings(), Nodes: uint32(nodes)}}
		return resp, nil
	}
	list, found, err := s.view.ReplicaList(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range list {
		resp.Replicas = append(resp.Replicas, &sluicev1.Replica{Name: r.Name, Description: r.Holder, Settings: r.Settings, Nodes: uint32(r.Nodes)})
	}
	for _, d := range implied(found) {
		resp.Disagreements = append(resp.Disagreements, disagreementText(d, "replica "+s.replica))
	}
	return resp, nil
}
