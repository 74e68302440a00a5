// Package rules runs a listener's rules: the ordered list of the snapshot's
// Listener.rules, compiled once per snapshot into a Set that decides, for
// every request (HTTP) or connection (TCP), what the listener does with it.
//
// Evaluation follows HAProxy's "http-request" rules and Envoy's route
// matching: rules are looked at in order, and the first one whose match
// holds and that has an action decides (route to a cluster, allow, deny,
// redirect, respond). A rule without an action only edits headers and the
// evaluation goes on; when no rule decides, the listener's default cluster
// takes the work.
//
// Compile does everything that can be done ahead: regular expressions are
// compiled, source prefixes merged into sorted ranges, patterns folded to
// lower case when they ignore case, the conditions of a match ordered
// cheapest first, and the answers and header edits built as the proxy sends
// them. Eval then allocates nothing: it reads the request through the
// spans of httpproxy.Request and hands the proxy prebuilt edits and answers.
package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
)

// Action is what the deciding rule does.
type Action uint8

const (
	// Continue: no rule decided; the listener's default cluster gets the
	// work.
	Continue Action = iota
	// Route: the work goes to the cluster Verdict.Route names.
	Route
	// Allow: the default cluster gets the work; later rules were skipped.
	Allow
	// Deny: the request is answered with Verdict.Answer; a TCP connection
	// is closed.
	Deny
	// Redirect: the request is answered with Verdict.Answer, a redirect.
	Redirect
	// Respond: the request is answered with Verdict.Answer.
	Respond
)

var actionNames = [...]string{"continue", "route", "allow", "deny", "redirect", "respond"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", a)
}

// Input is what rules look at. A caller fills the exported fields on its
// stack and passes a pointer to Eval; the unexported ones cache what Eval
// derives from the request, so that 200 rules on the host parse it once.
type Input struct {
	// Source is the client's address and port (IPv4-mapped addresses are
	// matched as IPv4).
	Source netip.AddrPort
	// TLS is whether the client connection is TLS, SNI the server name it
	// sent in its handshake (empty without).
	TLS bool
	SNI []byte
	// Request is the HTTP request; nil on a TCP listener. Eval calls its
	// EditRequest and EditResponse for the edits of the rules that hold.
	Request *httpproxy.Request
	// Again says the work was looked at before: this is a pick again,
	// after a failed connect or a retired endpoint. A rate_limit judges it
	// by the client's count as it stands, which already counts it.
	Again bool

	host     []byte // the host without port, brackets or final dot
	hostDone bool
	low      [2]lowered // values folded to lower case (strMatch.match)
	lowNext  uint8
}

// Verdict is the outcome of Eval.
type Verdict struct {
	Action Action
	// Route indexes Set.Routes for Action Route.
	Route int
	// Answer is what the proxy answers with for Deny, Redirect and Respond
	// on an HTTP listener; nil on a TCP listener.
	Answer *httpproxy.Answer
	// Rule is the index of the deciding rule, -1 for Continue.
	Rule int
	// RetryAfter, when the deciding rule's rate_limit held and its answer
	// is a 429 or 503 without a Retry-After of its own, is how long until
	// the client's next request would be within the rate, were it to send
	// none before: what the answer's Retry-After says. 0 otherwise.
	RetryAfter time.Duration
}

// Set is a compiled list of rules. It is immutable and safe for concurrent
// use; a nil *Set has no rules.
type Set struct {
	rules  []rule
	routes []string
	tls    bool
}

// rule is one compiled rule.
type rule struct {
	name      string // "rules[N]" for an unnamed one
	match     *cond  // nil: always holds
	action    Action
	route     int
	answer    *httpproxy.Answer
	reqEdits  *httpproxy.HeaderEdits
	respEdits *httpproxy.HeaderEdits
	limit     *rateLimit // nil: no rate_limit
	// retry: the answer tells a client over limit when to come back
	// (Verdict.RetryAfter).
	retry bool
}

// Routes lists the clusters the rules route to, each once, in the order of
// their first use; Verdict.Route indexes it.
func (s *Set) Routes() []string {
	if s == nil {
		return nil
	}
	return s.routes
}

// UsesTLS reports whether a rule matches on tls or sni, which a TCP
// listener learns only by reading the client's ClientHello before it
// evaluates the rules (Input.TLS, Input.SNI).
func (s *Set) UsesTLS() bool { return s != nil && s.tls }

// Len is the number of rules.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// Carry hands the rate counts of prev's rules to s's, so that a new
// snapshot does not start every client's count again: a rule with a
// rate_limit takes the counts of prev's rule of the same name, or, when
// neither is named, at the same index, if that one counted over the same
// period, with the same max_clients, prefixes and header. Call it before s is
// used.
func (s *Set) Carry(prev *Set) {
	if s == nil || prev == nil {
		return
	}
	for i := range s.rules {
		r := &s.rules[i]
		if r.limit == nil {
			continue
		}
		// An unnamed rule's name is its place, "rules[N]", which no
		// snapshot's name can spell.
		j := slices.IndexFunc(prev.rules, func(o rule) bool { return o.name == r.name })
		if j < 0 {
			continue
		}
		if old := prev.rules[j].limit; old != nil && r.limit.countsLike(old) {
			r.limit.table = old.table
		}
	}
}

// RateLimit is what a rule with a rate_limit counted.
type RateLimit struct {
	// Rule is the rule's name, or "rules[N]" for an unnamed one.
	Rule string
	// Limited counts the requests (connections) the rule held for, over
	// the rate: a pick again after a failed connect is not counted again.
	// It carries on across snapshots with the rule's counts (Carry).
	Limited uint64
	// Clients is how many clients (addresses, prefixes or header values)
	// it tracks.
	Clients int
	// Requests and Period are the rule's rate: a client that sent more
	// than Requests within the last Period is over it.
	Requests uint64
	Period   time.Duration
	// Top lists the clients with the highest rates, as many as
	// RateLimits was asked for.
	Top []ClientRate
}

// ClientRate is one client's rate, as a rule with a rate_limit counts it.
type ClientRate struct {
	// Client is the address counted (IPv4-mapped ones as IPv4), or the
	// prefix counted as one client (ipv4_prefix, ipv6_prefix: "10.1.2.0/24"),
	// or the header value (its first 64 bytes, then "…").
	Client string
	// Rate is the requests (connections) counted within the sliding
	// period that ends now.
	Rate uint64
}

// RateLimits lists the rules of s that have a rate_limit, in order, each
// with its top clients by rate now, highest first (none for top 0).
// It takes each shard's lock of each table in turn.
func (s *Set) RateLimits(top int) []RateLimit {
	if s == nil {
		return nil
	}
	var out []RateLimit
	for i := range s.rules {
		r := &s.rules[i]
		l := r.limit
		if l == nil {
			continue
		}
		rl := RateLimit{Rule: r.name, Limited: l.table.limited.Load(), Clients: l.table.tracked(), Requests: l.requests, Period: l.table.period}
		for _, c := range l.table.top(top) {
			rl.Top = append(rl.Top, ClientRate{Client: l.display(c), Rate: c.rate})
		}
		out = append(out, rl)
	}
	return out
}

// Name is the name of rule i; "rules[i]" when the snapshot gives it none.
func (s *Set) Name(i int) string { return s.rules[i].name }

// Eval runs the rules for in and returns the verdict of the first that
// decides. The header edits of every rule that holds, up to and including
// the deciding one, are handed to in.Request in rule order. A rule with a
// rate_limit counts the work its match holds for, by client (address or
// header value), and holds only for a client over the rate. Eval does not
// keep in, and does not allocate but for a rate_limit's table, which grows
// now and then as new clients come.
func (s *Set) Eval(in *Input) Verdict {
	if s != nil {
		for i := range s.rules {
			r := &s.rules[i]
			if r.match != nil && !r.match.eval(in) {
				continue
			}
			var wait time.Duration
			if r.limit != nil {
				over, w := r.limit.over(in, r.retry)
				if !over {
					continue
				}
				wait = w
			}
			if in.Request != nil {
				if r.reqEdits != nil {
					in.Request.EditRequest(r.reqEdits)
				}
				if r.respEdits != nil {
					in.Request.EditResponse(r.respEdits)
				}
			}
			if r.action != Continue {
				return Verdict{Action: r.action, Route: r.route, Answer: r.answer, Rule: i, RetryAfter: wait}
			}
		}
	}
	return Verdict{Rule: -1}
}
