package rules

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// Defaults of the actions, as the snapshot documents them.
const (
	DefaultDenyStatus    = 403
	DefaultDenyBody      = "request denied\n"
	DefaultRespondStatus = 200
)

// Compile builds the Set of a listener's rules; http says whether the
// listener speaks HTTP, and pages are its error pages: a deny of 502, 503
// or 504 with no body or content type of its own answers with the page of
// its status, as HAProxy's "http-request deny deny_status" answers with
// the errorfile or errorloc of its status. It refuses what
// snapshot.Validate refuses of the rules themselves (cluster names are not
// checked here: Routes lists them for the caller to resolve), so a
// validated snapshot always compiles; its errors name the rule and field
// ("rules[2].match.path.regex[0]: ...").
func Compile(specs []*sluicev1.Rule, http bool, pages []*sluicev1.ErrorPage) (*Set, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	c := &compiler{http: http, pages: pages, routes: map[string]int{}}
	s := &Set{rules: make([]rule, 0, len(specs))}
	for i, spec := range specs {
		p := fmt.Sprintf("rules[%d]", i)
		r := c.rule(spec, p)
		if r.name == "" {
			r.name = p // how logs and metrics name an unnamed rule
		}
		s.rules = append(s.rules, r)
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	s.routes = c.names
	s.tls = c.tls
	return s, nil
}

// compiler collects the faults of one Compile.
type compiler struct {
	http   bool
	pages  []*sluicev1.ErrorPage
	tls    bool // a match looks at tls or sni
	routes map[string]int
	names  []string
	errs   []error
}

func (c *compiler) fail(path, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (c *compiler) rule(spec *sluicev1.Rule, p string) rule {
	r := rule{name: spec.GetName()}
	if spec.Match != nil {
		r.match = c.match(spec.Match, p+".match", 1)
	}
	switch a := spec.GetAction().(type) {
	case nil:
		if spec.RequestHeaders == nil && spec.ResponseHeaders == nil {
			c.fail(p, "has no action and no header edits")
		}
	case *sluicev1.Rule_Route:
		r.action = Route
		if a.Route == "" {
			c.fail(p+".route", "empty cluster name")
		}
		idx, ok := c.routes[a.Route]
		if !ok {
			idx = len(c.names)
			c.routes[a.Route] = idx
			c.names = append(c.names, a.Route)
		}
		r.route = idx
	case *sluicev1.Rule_Allow:
		r.action = Allow
	case *sluicev1.Rule_Deny:
		r.action = Deny
		r.answer = c.deny(a.Deny, p+".deny")
	case *sluicev1.Rule_Redirect:
		r.action = Redirect
		r.answer = c.redirect(a.Redirect, p+".redirect")
	case *sluicev1.Rule_Respond:
		r.action = Respond
		r.answer = c.respond(a.Respond, p+".respond")
	}
	if rl := spec.GetRateLimit(); rl != nil {
		r.limit = c.rateLimit(rl, p+".rate_limit")
		r.retry = tellsRetry(spec)
	}
	if spec.RequestHeaders != nil || spec.ResponseHeaders != nil {
		switch {
		case !c.http:
			c.fail(p, "header edits on a TCP listener")
		case r.action == Deny || r.action == Redirect || r.action == Respond:
			c.fail(p, "header edits with %s, which forwards nothing", r.action)
		default:
			r.reqEdits = c.edits(spec.RequestHeaders, p+".request_headers")
			r.respEdits = c.edits(spec.ResponseHeaders, p+".response_headers")
		}
	}
	return r
}

// tellsRetry reports whether the answer of rule spec, which has a
// rate_limit, tells a client over it when to come back: a deny or respond
// of 429 (RFC 6585) or 503 that has no Retry-After of its own.
func tellsRetry(spec *sluicev1.Rule) bool {
	var status uint32
	switch a := spec.GetAction().(type) {
	case *sluicev1.Rule_Deny:
		status = a.Deny.GetStatus()
	case *sluicev1.Rule_Respond:
		status = a.Respond.GetStatus()
		for name := range a.Respond.GetHeaders() {
			if strings.EqualFold(name, "Retry-After") {
				return false
			}
		}
	}
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

func (c *compiler) rateLimit(rl *sluicev1.RateLimit, p string) *rateLimit {
	period := rl.GetPeriod().AsDuration()
	if rl.GetRequests() < 1 {
		c.fail(p+".requests", "must be 1 or more")
	}
	if period < time.Second || period > 24*time.Hour {
		c.fail(p+".period", "%v is not 1s to 24h", period)
	}
	if rl.GetMaxClients() > MaxMaxClients {
		c.fail(p+".max_clients", "%d is over %d", rl.GetMaxClients(), MaxMaxClients)
	}
	v4, v6 := int(rl.GetIpv4Prefix()), int(rl.GetIpv6Prefix())
	if v4 > 32 {
		c.fail(p+".ipv4_prefix", "%d is over 32", v4)
	}
	if v6 > 128 {
		c.fail(p+".ipv6_prefix", "%d is over 128", v6)
	}
	header := rl.GetHeader()
	switch {
	case header == "":
	case !c.http:
		c.fail(p+".header", "only on HTTP listeners")
	case !snapshot.IsToken(header):
		c.fail(p+".header", "%q is not a header name", header)
	case v4 != 0 || v6 != 0:
		c.fail(p, "header with ipv4_prefix or ipv6_prefix")
	}
	if v4 == 0 || v4 > 32 {
		v4 = 32
	}
	if v6 == 0 || v6 > 128 {
		v6 = 128
	}
	return &rateLimit{requests: uint64(rl.GetRequests()), v4: v4, v6: v6, header: header, table: newRateTable(period, int(rl.GetMaxClients()))}
}

func (c *compiler) deny(d *sluicev1.Deny, p string) *httpproxy.Answer {
	if !c.http {
		if d.GetStatus() != 0 || d.GetBody() != "" || d.GetContentType() != "" {
			c.fail(p, "a TCP listener closes a denied connection: no status, body or content type")
		}
		return nil
	}
	status, body := int(d.GetStatus()), d.GetBody()
	if status == 0 {
		status = DefaultDenyStatus
	}
	if status < 400 || status > 599 {
		c.fail(p+".status", "%d is not 400 to 599", status)
		return nil
	}
	// The answer depends on who asked: a shared cache must not serve it
	// to others.
	noCache := httpproxy.Field{Name: "Cache-Control", Value: "no-cache"}
	resp := httpproxy.Response{
		Status:      status,
		ContentType: d.GetContentType(),
		Body:        []byte(body),
		Fields:      []httpproxy.Field{noCache},
	}
	i := slices.IndexFunc(c.pages, func(page *sluicev1.ErrorPage) bool { return int(page.GetStatus()) == status })
	switch {
	case body != "":
	case i < 0 || resp.ContentType != "":
		resp.Body = []byte(DefaultDenyBody)
	case c.pages[i].GetRedirect() != "":
		page := c.pages[i]
		resp.Status = cmp.Or(int(page.GetRedirectCode()), http.StatusFound)
		resp.Refusal = status
		resp.Fields = []httpproxy.Field{{Name: "Location", Value: page.GetRedirect()}, noCache}
	default:
		page := c.pages[i]
		resp.ContentType = cmp.Or(page.GetContentType(), httpproxy.DefaultErrorPageContentType)
		resp.Body = []byte(page.GetBody())
	}
	a, err := httpproxy.NewResponse(resp)
	if err != nil {
		c.fail(p, "%v", err)
	}
	return a
}

func (c *compiler) respond(r *sluicev1.Respond, p string) *httpproxy.Answer {
	if !c.http {
		c.fail(p, "only on HTTP listeners")
		return nil
	}
	status := int(r.GetStatus())
	if status == 0 {
		status = DefaultRespondStatus
	}
	a, err := httpproxy.NewResponse(httpproxy.Response{
		Status:      status,
		ContentType: r.GetContentType(),
		Body:        []byte(r.GetBody()),
		Fields:      sortedFields(r.GetHeaders()),
	})
	if err != nil {
		c.fail(p, "%v", err)
	}
	return a
}

func (c *compiler) redirect(r *sluicev1.Redirect, p string) *httpproxy.Answer {
	if !c.http {
		c.fail(p, "only on HTTP listeners")
		return nil
	}
	a, err := httpproxy.NewRedirect(httpproxy.Redirect{
		Code:       int(r.GetCode()),
		Scheme:     r.GetScheme(),
		Host:       r.GetHost(),
		Port:       int(r.GetPort()),
		Path:       r.GetPath(),
		Prefix:     r.GetPrefix(),
		StripQuery: r.GetStripQuery(),
	})
	if err != nil {
		c.fail(p, "%v", err)
	}
	return a
}

func (c *compiler) edits(e *sluicev1.HeaderEdits, p string) *httpproxy.HeaderEdits {
	if e == nil {
		return nil
	}
	he, err := httpproxy.NewHeaderEdits(e.GetRemove(), sortedFields(e.GetSet()), sortedFields(e.GetAdd()))
	if err != nil {
		c.fail(p, "%v", err)
	}
	return he
}

// sortedFields turns a map of fields into fields ordered by name, the order
// the snapshot documents (proto maps have none).
func sortedFields(m map[string]string) []httpproxy.Field {
	out := make([]httpproxy.Field, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, httpproxy.Field{Name: name, Value: m[name]})
	}
	return out
}
