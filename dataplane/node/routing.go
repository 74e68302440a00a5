package node

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/rules"
	"github.com/sluice-lb/sluice/dataplane/tcpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// routing is what a listener sends where: its compiled rules and the
// clusters they route to, with the default cluster for the rest. It is
// compiled with the snapshot and never changes.
type routing struct {
	def    *cluster
	rules  *rules.Set // nil without rules
	routes []*cluster // by rules.Verdict.Route
}

// compileRouting compiles the rules of listener ls against the clusters of
// the same snapshot; the rules' rate counts carry on from prev, the rules
// of the listener of that name until now (nil: none).
func compileRouting(ls *sluicev1.Listener, clusters map[string]*cluster, prev *rules.Set) (*routing, error) {
	rt := &routing{def: clusters[ls.GetDefaultCluster()]}
	if rt.def == nil {
		return nil, fmt.Errorf("unknown default cluster %q", ls.GetDefaultCluster())
	}
	set, err := rules.Compile(ls.GetRules(), ls.GetProtocol() == sluicev1.Protocol_PROTOCOL_HTTP, ls.GetHttp().GetErrorPages())
	if err != nil {
		return nil, err
	}
	set.Carry(prev)
	rt.rules = set
	for _, name := range set.Routes() {
		c := clusters[name]
		if c == nil {
			return nil, fmt.Errorf("rules route to unknown cluster %q", name)
		}
		rt.routes = append(rt.routes, c)
	}
	return rt, nil
}

// httpDirector returns the Director of an HTTP listener: the default
// cluster's own when there are no rules, which costs rules nothing.
func (rt *routing) httpDirector() httpproxy.Director {
	if rt.rules == nil {
		return httpDirector{rt.def}
	}
	return httpRuleDirector{rt}
}

// tcpDirector is httpDirector for TCP listeners.
func (rt *routing) tcpDirector() tcpproxy.Director {
	if rt.rules == nil {
		return tcpDirector{rt.def}
	}
	return tcpRuleDirector{rt}
}

// defaultInspectTimeout is how long a TCP listener whose rules match on tls
// or sni waits for a client's ClientHello, when tcp.inspect_timeout does
// not say.
const defaultInspectTimeout = 5 * time.Second

// inspectTimeout is the tcpproxy.Config.Inspect of TCP listener ls: 0,
// reading nothing before the pick, unless its rules need the ClientHello.
func (rt *routing) inspectTimeout(ls *sluicev1.Listener) time.Duration {
	if !rt.rules.UsesTLS() {
		return 0
	}
	return durationOr(ls.GetTcp().GetInspectTimeout().AsDuration(), defaultInspectTimeout)
}

// httpRuleDirector runs a listener's rules for every request: the rule
// that decides sends the request to its cluster, or has the proxy answer
// it (deny, redirect, respond).
type httpRuleDirector struct{ rt *routing }

func (d httpRuleDirector) Pick(req *httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	in := rules.Input{Source: netip.AddrPortFrom(req.ClientAddr(), req.ClientPort()), Request: req, TLS: req.TLS(), SNI: req.ServerName(), Again: req.Again()}
	v := d.rt.rules.Eval(&in)
	if v.Rule >= 0 {
		req.DecidedBy(d.rt.rules.Name(v.Rule))
	}
	c := d.rt.def
	switch v.Action {
	case rules.Route:
		c = d.rt.routes[v.Route]
	case rules.Deny, rules.Redirect, rules.Respond:
		req.Respond(v.Answer)
		req.RetryAfter(v.RetryAfter)
		return nil, 0, nil
	}
	return httpDirector{c}.Pick(req)
}

// tcpRuleDirector runs a TCP listener's rules for every connection. With
// rules on tls or sni, the proxy read the client's ClientHello first (TLS
// passthrough; see inspectTimeout) and a says what it held.
type tcpRuleDirector struct{ rt *routing }

func (d tcpRuleDirector) Pick(client net.Addr, a *tcpproxy.Attempt) (*upstream.Endpoint, time.Duration, error) {
	in := rules.Input{TLS: a.TLS(), SNI: a.SNI(), Again: a.Again()}
	if tcp, ok := client.(*net.TCPAddr); ok {
		in.Source = tcp.AddrPort()
	}
	v := d.rt.rules.Eval(&in)
	if v.Rule >= 0 {
		a.DecidedBy(d.rt.rules.Name(v.Rule))
	}
	c := d.rt.def
	switch v.Action {
	case rules.Route:
		c = d.rt.routes[v.Route]
	case rules.Deny:
		return nil, 0, tcpproxy.ErrDenied
	}
	return tcpDirector{c}.Pick(client, a)
}
