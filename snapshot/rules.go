package snapshot

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// MaxMatchDepth bounds how deeply all, any and not may nest in one rule's
// match: deep enough for any condition a person writes, shallow enough that
// evaluation and error paths stay small.
const MaxMatchDepth = 8

// TooDeep is what a match nested past MaxMatchDepth is refused with, by
// the validator and by the node's rule compiler alike.
var TooDeep = fmt.Sprintf("matches nest more than %d deep: the rule's own and %d levels of all, any and not at most", MaxMatchDepth, MaxMatchDepth-1)

// ParseSource reads one entry of a match's source list: an IP prefix in CIDR
// notation ("10.0.0.0/8") or a single address ("192.0.2.7", which is
// 192.0.2.7/32). IPv4-mapped IPv6 prefixes are turned into IPv4 ones, as
// client addresses are. A prefix with bits set past its length
// ("10.0.0.1/8") is refused: it is more likely a typo than what was meant.
func ParseSource(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a CIDR prefix like 10.0.0.0/8", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has bits set past its length: write %s, or %s/%d for the one address", s, m, p.Addr(), p.Addr().BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			return netip.Prefix{}, fmt.Errorf("%q mixes IPv4-mapped and plain IPv6 addresses", s)
		}
		p = netip.PrefixFrom(a.Unmap(), bits)
	}
	return p, nil
}

// CompileRegex compiles a rule's regular expression the way the dataplane
// runs it: Go RE2 syntax, matching anywhere in the value, ASCII and Unicode
// case folded with ignoreCase. Its error says what RE2 cannot do.
func CompileRegex(expr string, ignoreCase bool) (*regexp.Regexp, error) {
	src := expr
	if ignoreCase {
		src = "(?i)" + expr
	}
	re, err := regexp.Compile(src)
	if err == nil {
		return re, nil
	}
	if _, own := regexp.Compile(expr); own != nil {
		err = own // quoting the expression as written, without (?i)
	}
	msg := strings.TrimPrefix(err.Error(), "error parsing regexp: ")
	hint := ""
	if strings.Contains(msg, "invalid or unsupported Perl syntax") || strings.Contains(msg, "invalid escape sequence") {
		hint = "; RE2 has no lookaround or backreferences"
	}
	return nil, fmt.Errorf("%q is not a valid regular expression (Go RE2 syntax): %s%s", expr, msg, hint)
}

// ProxyField reports whether name (any case) is a header field the HTTP
// proxy owns: the framing and connection fields, which it removes or
// writes itself, and Host, which routing and the endpoint depend on. Rules
// cannot edit them nor add them to a response.
func ProxyField(name string) bool {
	switch strings.ToLower(name) {
	case "host", "content-length", "transfer-encoding", "connection", "keep-alive",
		"proxy-connection", "te", "upgrade", "expect":
		return true
	}
	return false
}

// ruleChecker checks the rules of one listener.
type ruleChecker struct {
	http         bool           // the listener speaks HTTP
	tls          bool           // and terminates TLS
	clusters     map[string]int // index by name
	clusterNames []string
	snap         *sluicev1.Snapshot
	add          func(path, format string, args ...any)
}

// ruleErrors checks the rules of listener l, at path p ("listeners[0]").
func ruleErrors(s *sluicev1.Snapshot, l *sluicev1.Listener, p string, clusters map[string]int, clusterNames []string, add func(path, format string, args ...any)) {
	if len(l.GetRules()) == 0 {
		return
	}
	rc := &ruleChecker{
		http:         l.GetProtocol() == sluicev1.Protocol_PROTOCOL_HTTP,
		tls:          l.GetTls() != nil,
		clusters:     clusters,
		clusterNames: clusterNames,
		snap:         s,
		add:          add,
	}
	names := map[string]int{}
	for j, r := range l.GetRules() {
		rp := fmt.Sprintf("%s.rules[%d]", p, j)
		if n := r.GetName(); n != "" {
			if first, dup := names[n]; dup {
				add(rp+".name", "duplicate rule name %q, first used at %s.rules[%d]", n, p, first)
			} else {
				names[n] = j
			}
		}
		rc.rule(r, rp)
	}
}

func (rc *ruleChecker) rule(r *sluicev1.Rule, p string) {
	edits := r.RequestHeaders != nil || r.ResponseHeaders != nil
	switch a := r.GetAction().(type) {
	case nil:
		if !edits {
			rc.add(p, "does nothing: give it an action (route, deny, allow, redirect or respond) or header edits")
		}
	case *sluicev1.Rule_Route:
		rc.route(a.Route, p+".route")
	case *sluicev1.Rule_Deny:
		rc.deny(a.Deny, p+".deny")
	case *sluicev1.Rule_Redirect:
		if !rc.http {
			rc.add(p+".redirect", "only on HTTP listeners: a TCP listener can route, allow or deny (close)")
		} else {
			rc.redirect(a.Redirect, p+".redirect")
		}
	case *sluicev1.Rule_Respond:
		if !rc.http {
			rc.add(p+".respond", "only on HTTP listeners: a TCP listener can route, allow or deny (close)")
		} else {
			rc.respond(a.Respond, p+".respond")
		}
	}
	for _, e := range []struct {
		name  string
		edits *sluicev1.HeaderEdits
	}{{"request_headers", r.RequestHeaders}, {"response_headers", r.ResponseHeaders}} {
		if e.edits == nil {
			continue
		}
		ep := p + "." + e.name
		switch r.GetAction().(type) {
		case *sluicev1.Rule_Deny, *sluicev1.Rule_Redirect, *sluicev1.Rule_Respond:
			rc.add(ep, "only with route, allow or no action: with deny, redirect or respond the proxy answers itself and nothing is forwarded")
			continue
		}
		if !rc.http {
			rc.add(ep, "only on HTTP listeners")
			continue
		}
		rc.headerEdits(e.edits, ep)
	}
	if r.Match != nil {
		rc.match(r.Match, p+".match", 1)
	}
	if rl := r.GetRateLimit(); rl.GetHeader() != "" {
		rc.rateHeader(rl, p+".rate_limit")
	}
}

// rateHeader checks a rate_limit that counts clients by a header.
func (rc *ruleChecker) rateHeader(rl *sluicev1.RateLimit, p string) {
	switch n := rl.GetHeader(); {
	case !rc.http:
		rc.add(p+".header", "only on HTTP listeners: a TCP listener sees no request, and counts clients by address")
	case !IsToken(n):
		rc.add(p+".header", notHeaderName, n)
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"ipv4_prefix", rl.GetIpv4Prefix() != 0}, {"ipv6_prefix", rl.GetIpv6Prefix() != 0}} {
		if f.set {
			rc.add(p+"."+f.name, "counts addresses, and this rate_limit counts the values of header %s: drop one of them", rl.GetHeader())
		}
	}
}

func (rc *ruleChecker) route(name, p string) {
	if name == "" {
		return // PGV says it must not be empty
	}
	i, ok := rc.clusters[name]
	if !ok {
		msg := fmt.Sprintf("unknown cluster %q", name)
		if near := Closest(name, rc.clusterNames); near != "" {
			msg += fmt.Sprintf(", did you mean %q?", near)
		}
		rc.add(p, "%s", msg)
		return
	}
	if !rc.http && rc.snap.GetClusters()[i].Cookie != nil {
		rc.add(p, "cluster %q has cookie persistence, which needs an HTTP listener (use stick: { on: SOURCE_IP } for TCP)", name)
	}
}

func (rc *ruleChecker) deny(d *sluicev1.Deny, p string) {
	if !rc.http {
		if d.GetStatus() != 0 || d.GetBody() != "" || d.GetContentType() != "" {
			rc.add(p, "a TCP listener closes a denied connection: status, body and content_type are for HTTP listeners; write deny: {}")
		}
		return
	}
	if ct := d.GetContentType(); !isFieldValue(ct) {
		rc.add(p+".content_type", "%q may not contain control characters or start or end with a space", ct)
	}
}

func (rc *ruleChecker) redirect(r *sluicev1.Redirect, p string) {
	if r.GetScheme() == "" && r.GetHost() == "" && r.GetPort() == 0 && r.GetPath() == "" && r.GetPrefix() == "" {
		rc.add(p, "redirects to the very URL asked for: set scheme, host, port, path or prefix")
	}
	if h := r.GetHost(); h != "" {
		if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err != nil && !isDNSName(h) || err == nil && a.Zone() != "" {
			rc.add(p+".host", "%q must be a DNS name or an IP address, without port (use port)", h)
		}
	}
	if r.GetPath() != "" && r.GetPrefix() != "" {
		rc.add(p+".prefix", "a redirect replaces the path or puts a prefix before it, not both")
	}
	for _, f := range []struct{ name, v string }{{"path", r.GetPath()}, {"prefix", r.GetPrefix()}} {
		if f.v != "" && (f.v[0] != '/' || !isPathValue(f.v)) {
			rc.add(p+"."+f.name, "%q must start with / and hold no spaces, control characters, '?' or '#'", f.v)
		}
	}
}

// isPathValue reports whether s can stand in the path of a Location as is:
// visible ASCII, with no '?' or '#', and only well-formed %-escapes.
func isPathValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c <= ' ' || c >= 0x7f || c == '?' || c == '#':
			return false
		case c == '%':
			if i+2 >= len(s) || !isHexDigit(s[i+1]) || !isHexDigit(s[i+2]) {
				return false
			}
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (rc *ruleChecker) respond(r *sluicev1.Respond, p string) {
	if st := r.GetStatus(); (st == 204 || st == 304) && r.GetBody() != "" {
		rc.add(p+".body", "a %d response has no body", st)
	}
	if ct := r.GetContentType(); !isFieldValue(ct) {
		rc.add(p+".content_type", "%q may not contain control characters or start or end with a space", ct)
	}
	rc.fieldMap(r.GetHeaders(), p+".headers", true)
}

func (rc *ruleChecker) headerEdits(e *sluicev1.HeaderEdits, p string) {
	rc.fieldMap(e.GetSet(), p+".set", false)
	rc.fieldMap(e.GetAdd(), p+".add", false)
	seen := map[string]int{}
	for k, name := range e.GetRemove() {
		fp := fmt.Sprintf("%s.remove[%d]", p, k)
		if !rc.fieldName(name, fp, false) {
			continue
		}
		if first, dup := seen[strings.ToLower(name)]; dup {
			rc.add(fp, "%q is already removed by %s.remove[%d]", name, p, first)
		}
		seen[strings.ToLower(name)] = k
	}
}

// fieldMap checks a map of field names to values. Names differing only in
// case would be the same field, given twice in an order nobody wrote.
func (rc *ruleChecker) fieldMap(m map[string]string, p string, response bool) {
	lower := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(m)) {
		fp := fmt.Sprintf("%s[%s]", p, name)
		if !rc.fieldName(name, fp, response) {
			continue
		}
		if other, dup := lower[strings.ToLower(name)]; dup {
			rc.add(fp, "%q and %q are the same field (names ignore case)", other, name)
		}
		lower[strings.ToLower(name)] = name
		if v := m[name]; !isFieldValue(v) {
			rc.add(fp, "value %q may not contain control characters or start or end with a space", v)
		}
	}
}

// fieldName checks a header name a rule edits or answers with; response is
// set for the fields of a respond action, where Content-Type has a field of
// its own.
func (rc *ruleChecker) fieldName(name, p string, response bool) bool {
	switch {
	case !IsToken(name):
		rc.add(p, notHeaderName, name)
	case ProxyField(name):
		rc.add(p, "%s is the proxy's to write (framing and connection handling) and cannot be set by a rule", name)
	case response && strings.EqualFold(name, "content-type"):
		rc.add(p, "use content_type")
	default:
		return true
	}
	return false
}

// match checks one match at path p, depth levels deep.
func (rc *ruleChecker) match(m *sluicev1.Match, p string, depth int) {
	if depth > MaxMatchDepth {
		rc.add(p, "%s", TooDeep)
		return
	}
	httpOnly := func(field string, set bool) bool {
		if set && !rc.http {
			rc.add(p+"."+field, "only on HTTP listeners: a TCP listener sees no request, only the client's address")
			return false
		}
		return set
	}
	if httpOnly("host", m.Host != nil) {
		rc.stringMatch(m.Host, p+".host", true)
	}
	if httpOnly("path", m.Path != nil) {
		rc.stringMatch(m.Path, p+".path", false)
	}
	if httpOnly("method", len(m.GetMethod()) > 0) {
		for k, meth := range m.GetMethod() {
			if fault := methodFault(meth); fault != "" {
				rc.add(fmt.Sprintf("%s.method[%d]", p, k), "%s", fault)
			}
		}
	}
	if h := m.GetHeader(); httpOnly("header", h != nil) {
		hp := p + ".header"
		if n := h.GetName(); n != "" && !IsToken(n) {
			rc.add(hp+".name", notHeaderName, n)
		}
		rc.patterns(h, hp, false)
		if h.Present != nil && !h.GetPresent() && hasPatterns(h) {
			rc.add(hp+".present", "present: false holds only without the field, whose value then matches nothing: drop the patterns or present")
		}
	}
	if q := m.GetQuery(); httpOnly("query", q != nil) {
		qp := p + ".query"
		if n := q.GetName(); strings.ContainsAny(n, "&=# ") || !isAttrValue(n) {
			rc.add(qp+".name", "%q is not a query parameter name (no '&', '=', '#', spaces or control characters)", n)
		}
		rc.patterns(q, qp, false)
		if q.Present != nil && !q.GetPresent() && hasPatterns(q) {
			rc.add(qp+".present", "present: false holds only without the parameter, whose value then matches nothing: drop the patterns or present")
		}
	}
	for k, src := range m.GetSource() {
		if src == "" {
			continue // PGV says it must not be empty
		}
		if _, err := ParseSource(src); err != nil {
			rc.add(fmt.Sprintf("%s.source[%d]", p, k), "%v", err)
		}
	}
	if pr := m.GetSourcePort(); pr != nil && pr.GetTo() != 0 && pr.GetTo() < pr.GetFrom() {
		rc.add(p+".source_port", "range %d-%d is reversed: from is the lower port", pr.GetFrom(), pr.GetTo())
	}
	// A TCP listener reads the ClientHello of a TLS client it passes
	// through (TLS passthrough); an HTTP listener without a tls block
	// speaks plain HTTP only.
	if m.GetTls() && !rc.tls && rc.http {
		rc.add(p+".tls", "never holds: the listener has no tls block, every connection is plain")
	}
	if m.Sni != nil && !rc.tls && rc.http {
		rc.add(p+".sni", "never holds: the listener has no tls block, so no client sends a server name")
	} else if m.Sni != nil {
		rc.stringMatch(m.Sni, p+".sni", true)
	}
	for k, sub := range m.GetAll() {
		rc.match(sub, fmt.Sprintf("%s.all[%d]", p, k), depth+1)
	}
	for k, sub := range m.GetAny() {
		rc.match(sub, fmt.Sprintf("%s.any[%d]", p, k), depth+1)
	}
	if n := m.GetNot(); n != nil {
		if isEmptyMatch(n) {
			rc.add(p+".not", "an empty match always holds, so not: {} never does")
		} else {
			rc.match(n, p+".not", depth+1)
		}
	}
}

// patternSet is what StringMatch, HeaderMatch and QueryMatch share.
type patternSet interface {
	GetExact() []string
	GetPrefix() []string
	GetSuffix() []string
	GetContains() []string
	GetRegex() []string
	GetIgnoreCase() bool
}

func hasPatterns(s patternSet) bool {
	return len(s.GetExact())+len(s.GetPrefix())+len(s.GetSuffix())+len(s.GetContains())+len(s.GetRegex()) > 0
}

// stringMatch checks a StringMatch of a host or sni (names) or a path.
func (rc *ruleChecker) stringMatch(s *sluicev1.StringMatch, p string, names bool) {
	rc.patterns(s, p, names)
	if !names && len(s.GetDomain()) > 0 {
		rc.add(p+".domain", "only for host and sni")
	}
	for k, d := range s.GetDomain() {
		if names && d != "" && !isDNSName(strings.TrimPrefix(d, ".")) {
			hint := ""
			if rest, ok := strings.CutPrefix(d, "*."); ok {
				hint = fmt.Sprintf(" (%q holds for every subdomain, and for %s itself)", rest, rest)
			}
			rc.add(fmt.Sprintf("%s.domain[%d]", p, k), "%q is not a DNS name%s", d, hint)
		}
	}
	if !hasPatterns(s) && len(s.GetDomain()) == 0 {
		rc.add(p, "has no pattern: give it exact, prefix, suffix, contains, regex%s", map[bool]string{true: " or domain", false: ""}[names])
	}
}

func (rc *ruleChecker) patterns(s patternSet, p string, names bool) {
	for k, expr := range s.GetRegex() {
		if expr == "" {
			continue
		}
		if _, err := CompileRegex(expr, s.GetIgnoreCase() || names); err != nil {
			rc.add(fmt.Sprintf("%s.regex[%d]", p, k), "%v", err)
		}
	}
}

// isEmptyMatch reports whether m sets no condition.
func isEmptyMatch(m *sluicev1.Match) bool {
	return m.Host == nil && m.Path == nil && len(m.Method) == 0 && m.Header == nil && m.Query == nil &&
		len(m.Source) == 0 && m.SourcePort == nil && m.Tls == nil && m.Sni == nil &&
		len(m.All) == 0 && len(m.Any) == 0 && m.Not == nil
}
