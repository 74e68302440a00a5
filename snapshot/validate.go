package snapshot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Validate checks a snapshot against the protoc-gen-validate rules of the API
// and against the rules that span fields and resources:
//
//   - cluster names, listener names, and endpoint names within a cluster are
//     unique;
//   - a listener's default_cluster names a cluster of the snapshot;
//   - addresses are host:port with a numeric port 1..65535; an endpoint's host
//     is an IP address or a DNS name, a listener's host an IP address,
//     "localhost" or empty (all interfaces);
//   - no two listeners bind the same address (a wildcard host overlaps every
//     specific host on the same port);
//   - an http options block appears only on HTTP listeners, a tcp options
//     block only on TCP listeners;
//   - a TCP listener rebalances only a cluster whose clients, reconnecting,
//     can land elsewhere (not HASH, FIRST or a stick table);
//   - an outlier_detection block can eject (not both triggers 0), and its
//     max_ejection_time is not below its base_ejection_time;
//   - rules route to clusters of the snapshot, their regular expressions
//     and source prefixes parse, their header names are tokens the proxy
//     lets them edit, and a TCP listener's rules use only what a TCP
//     listener knows (the client's address) and does (route, allow, close);
//   - TLS is on HTTP listeners only, and inline certificates parse and
//     match their keys;
//   - an HTTP listener's trusted peers are addresses or CIDRs, and its
//     max_header_bytes leaves room for a request.
//   - the peers a listener trusts with PROXY headers are addresses or
//     prefixes.
//
// It returns nil or [Errors] holding every fault, in document order. A nil
// snapshot is the empty snapshot, which is valid.
func Validate(s *sluicev1.Snapshot) error { return ValidateChanged(s, nil) }

// ValidateChanged is Validate for a snapshot some of whose clusters are
// known valid: those known says true of are not checked again, on their
// own (their fields, endpoints, policies); what spans resources (names
// unique, references from listeners and rules) is checked as Validate
// does. known may be nil: every cluster is checked.
//
// A node validates every snapshot it gets, and a snapshot of 10k clusters
// rebuilt from a delta shares the clusters it did not change with the one
// the node runs: those, known because they validated before, need not cost
// 100k endpoint checks again.
func ValidateChanged(s *sluicev1.Snapshot, known func(*sluicev1.Cluster) bool) error {
	if s == nil {
		return nil
	}
	var errs Errors
	md := s.ProtoReflect().Descriptor()
	var skip []bool // by cluster index: known
	pgv := s
	if known != nil {
		// PGV sees the known clusters as nil, which validate, so its
		// paths keep their indexes and its snapshot rules still apply.
		skip = make([]bool, len(s.GetClusters()))
		shallow := &sluicev1.Snapshot{Clusters: slices.Clone(s.GetClusters()), Listeners: s.GetListeners()}
		for i, c := range shallow.Clusters {
			if c != nil && known(c) {
				skip[i], shallow.Clusters[i] = true, nil
			}
		}
		pgv = shallow
	}
	// PGV's rules and the semantic checks read the snapshot apart, so
	// they run at once: on a node that has two cores, a snapshot of 100k
	// endpoints is checked in about half the time.
	semantic := make(chan Errors, 1)
	go func() { semantic <- semanticErrors(s, skip) }()
	if err := pgv.ValidateAll(); err != nil {
		walkPGV(err, md, "", &errs)
	}
	pgvPaths := make(map[string]bool, len(errs))
	for _, e := range errs {
		pgvPaths[e.Path] = true
	}
	for _, e := range <-semantic {
		// A field PGV already refused (an empty address, a bad name) would
		// only be reported twice in other words.
		if !pgvPaths[e.Path] {
			errs = append(errs, e)
		}
	}
	sortDocOrder(errs, md)
	return errs.orNil()
}

// semanticErrors are the checks PGV cannot express: uniqueness, references,
// address syntax and overlapping binds. The clusters skip says true of (by
// index; skip may be nil) are checked only for what spans resources.
func semanticErrors(s *sluicev1.Snapshot, skip []bool) Errors {
	var errs Errors
	add := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}

	// Paths are formatted only for faults: this runs on every apply of
	// snapshots with 100k endpoints.
	clusters := make(map[string]int, len(s.GetClusters()))
	endpoints := map[string]int{}
	for i, c := range s.GetClusters() {
		if first, dup := clusters[c.GetName()]; dup {
			add(fmt.Sprintf("clusters[%d].name", i), "duplicate cluster name %q, first defined at clusters[%d]", c.GetName(), first)
		} else {
			clusters[c.GetName()] = i
		}
		if skip != nil && skip[i] {
			continue
		}
		policyErrors(c, i, add)
		persistenceErrors(c, i, add)
		healthErrors(c.GetHealthCheck(), fmt.Sprintf("clusters[%d].health_check", i), add)
		outlierErrors(c.GetOutlierDetection(), fmt.Sprintf("clusters[%d].outlier_detection", i), add)
		upstreamTLSErrors(c.GetTls(), i, add)
		clear(endpoints)
		for j, e := range c.GetEndpoints() {
			if first, dup := endpoints[e.GetName()]; dup {
				add(fmt.Sprintf("clusters[%d].endpoints[%d].name", i, j),
					"duplicate endpoint name %q, first defined at clusters[%d].endpoints[%d]", e.GetName(), i, first)
			} else {
				endpoints[e.GetName()] = j
			}
			if _, msg := parseAddress(e.GetAddress(), false); msg != "" {
				add(fmt.Sprintf("clusters[%d].endpoints[%d].address", i, j), "%s", msg)
			}
		}
	}

	type bound struct {
		index int
		bind  bindAddr
	}
	binds := map[uint16][]bound{} // by port: only same-port binds collide
	listeners := make(map[string]int, len(s.GetListeners()))
	clusterNames := make([]string, 0, len(clusters))
	for _, c := range s.GetClusters() {
		clusterNames = append(clusterNames, c.GetName())
	}
	for i, l := range s.GetListeners() {
		p := fmt.Sprintf("listeners[%d]", i)
		if first, dup := listeners[l.GetName()]; dup {
			add(p+".name", "duplicate listener name %q, first defined at listeners[%d]", l.GetName(), first)
		} else {
			listeners[l.GetName()] = i
		}
		if b, msg := parseAddress(l.GetAddress(), true); msg != "" {
			add(p+".address", "%s", msg)
		} else {
			for _, o := range binds[b.port] {
				if o.bind.overlaps(b) {
					ol := s.GetListeners()[o.index]
					if ol.GetAddress() == l.GetAddress() {
						add(p+".address", "%s is already bound by listeners[%d] (%s)", l.GetAddress(), o.index, ol.GetName())
					} else {
						add(p+".address", "%s overlaps %s of listeners[%d] (%s)", l.GetAddress(), ol.GetAddress(), o.index, ol.GetName())
					}
					break
				}
			}
			binds[b.port] = append(binds[b.port], bound{i, b})
		}
		if dc := l.GetDefaultCluster(); dc != "" {
			if _, ok := clusters[dc]; !ok {
				msg := fmt.Sprintf("unknown cluster %q", dc)
				if near := Closest(dc, clusterNames); near != "" {
					msg += fmt.Sprintf(", did you mean %q?", near)
				}
				add(p+".default_cluster", "%s", msg)
			}
		}
		if i, ok := clusters[l.GetDefaultCluster()]; ok && l.GetProtocol() == sluicev1.Protocol_PROTOCOL_TCP && s.GetClusters()[i].Cookie != nil {
			add(p+".default_cluster", "cluster %q has cookie persistence, which needs an HTTP listener (use stick: { on: SOURCE_IP } for TCP)", l.GetDefaultCluster())
		}
		ruleErrors(s, l, p, clusters, clusterNames, add)
		errorPageErrors(l.GetHttp().GetErrorPages(), p+".http.error_pages", add)
		httpOptionErrors(l.GetHttp(), p+".http", add)
		tlsErrors(l, p+".tls", add)
		http2Errors(l, p, add)
		proxyProtocolErrors(l, p+".proxy_protocol", add)
		if l.Http != nil && l.GetProtocol() != sluicev1.Protocol_PROTOCOL_HTTP {
			add(p+".http", "only allowed when protocol is HTTP")
		}
		if l.Tcp != nil && l.GetProtocol() != sluicev1.Protocol_PROTOCOL_TCP {
			add(p+".tcp", "only allowed when protocol is TCP")
		} else if i, ok := clusters[l.GetDefaultCluster()]; ok && l.GetTcp().GetRebalance() != nil {
			if why, fix := noRebalance(s.GetClusters()[i]); why != "" {
				add(p+".tcp.rebalance", "cluster %q %s, so a client whose session is closed comes back to the same endpoint; %s", l.GetDefaultCluster(), why, fix)
			}
		}
	}
	return errs
}

// noRebalance says why rebalancing cannot move the sessions of cluster c,
// and what would let it, or "" when it can: rebalance closes sessions so
// that their clients reconnect elsewhere, and with a hash, a stick table or
// FIRST they would reconnect to the endpoint they left, again and again.
func noRebalance(c *sluicev1.Cluster) (why, fix string) {
	const byLoad = "rebalance needs a policy that places sessions by load, such as LEAST_CONN"
	switch {
	case c.GetLbPolicy() == sluicev1.LbPolicy_LB_POLICY_HASH:
		return "balances by hash", byLoad
	case c.GetLbPolicy() == sluicev1.LbPolicy_LB_POLICY_FIRST:
		return "fills its first endpoint first (FIRST)", byLoad
	case c.Stick != nil:
		return "keeps a stick table", "rebalance needs sessions placed by load: remove the cluster's stick table"
	}
	return "", ""
}

// policyErrors checks that a cluster's policy blocks fit its lb_policy.
func policyErrors(c *sluicev1.Cluster, i int, add func(path, format string, args ...any)) {
	p := fmt.Sprintf("clusters[%d]", i)
	policy := c.GetLbPolicy()
	if c.Random != nil && policy != sluicev1.LbPolicy_LB_POLICY_RANDOM {
		add(p+".random", "only allowed when lb_policy is RANDOM")
	}
	h := c.GetHash()
	if policy != sluicev1.LbPolicy_LB_POLICY_HASH {
		if h != nil {
			add(p+".hash", "only allowed when lb_policy is HASH")
		}
		return
	}
	if h == nil {
		add(p+".hash", "required when lb_policy is HASH: say which key to hash, e.g. hash: { key: SOURCE_IP }")
		return
	}
	switch h.GetKey() {
	case sluicev1.HashKey_HASH_KEY_URL_PARAM, sluicev1.HashKey_HASH_KEY_HEADER, sluicev1.HashKey_HASH_KEY_COOKIE:
		if h.GetName() == "" {
			add(p+".hash.name", "required with key %s: the name of the %s to hash", shortEnum(h.GetKey()), strings.ToLower(strings.TrimPrefix(shortEnum(h.GetKey()), "URL_")))
		} else if !IsToken(h.GetName()) {
			add(p+".hash.name", "%q is not a valid %s name (letters, digits and !#$%%&'*+-.^_`|~ only)", h.GetName(), strings.ToLower(strings.TrimPrefix(shortEnum(h.GetKey()), "URL_")))
		}
	default:
		if h.GetName() != "" {
			add(p+".hash.name", "only allowed with key URL_PARAM, HEADER or COOKIE")
		}
	}
	if h.GetUseDomainOnly() && h.GetKey() != sluicev1.HashKey_HASH_KEY_HEADER {
		add(p+".hash.use_domain_only", "only allowed with key HEADER")
	}
	if f := h.GetBalanceFactor(); f != 0 && f < 100 {
		add(p+".hash.balance_factor", "must be 0 (off) or at least 100 (percent of the average load)")
	}
}

// persistenceErrors checks slow start, the persistence cookie and the
// endpoints' cookie values of cluster c.
func persistenceErrors(c *sluicev1.Cluster, i int, add func(path, format string, args ...any)) {
	p := fmt.Sprintf("clusters[%d]", i)
	if c.GetSlowStart().AsDuration() > 0 {
		switch c.GetLbPolicy() {
		case sluicev1.LbPolicy_LB_POLICY_UNSPECIFIED, sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN,
			sluicev1.LbPolicy_LB_POLICY_LEAST_CONN, sluicev1.LbPolicy_LB_POLICY_RANDOM:
		default:
			add(p+".slow_start", "only allowed when lb_policy is ROUND_ROBIN, LEAST_CONN or RANDOM (%s does not use weights at run time)", strings.TrimPrefix(c.GetLbPolicy().String(), "LB_POLICY_"))
		}
	}
	if ck := c.GetCookie(); ck != nil {
		if ck.GetName() != "" && !IsToken(ck.GetName()) {
			add(p+".cookie.name", "%q is not a valid cookie name (letters, digits and !#$%%&'*+-.^_`|~ only)", ck.GetName())
		}
		if v := ck.GetPath(); !isAttrValue(v) {
			add(p+".cookie.path", "%q may not contain ';', spaces or control characters", v)
		} else if v != "" && v[0] != '/' {
			add(p+".cookie.path", "%q must start with '/': browsers ignore a path that does not (RFC 6265, 5.2.4), and the cookie would not reach the rest of the site", v)
		}
		if v := ck.GetDomain(); !isAttrValue(v) || strings.ContainsAny(v, "/:") {
			add(p+".cookie.domain", "%q is not a domain name", v)
		}
		if ck.GetSameSite() == sluicev1.SameSite_SAME_SITE_NONE && !ck.GetSecure() {
			add(p+".cookie.same_site", "NONE requires secure: true (browsers drop SameSite=None cookies that are not Secure)")
		}
	}
	values := map[string]int{}
	for j, e := range c.GetEndpoints() {
		v := e.GetCookie()
		if v == "" {
			continue
		}
		path := fmt.Sprintf("%s.endpoints[%d].cookie", p, j)
		if !isCookieValue(v) {
			add(path, "%q is not a valid cookie value (no spaces, quotes, commas, semicolons or backslashes)", v)
		} else if first, dup := values[v]; dup {
			add(path, "duplicate cookie value %q, first used by %s.endpoints[%d]", v, p, first)
		} else {
			values[v] = j
		}
	}
}

// healthErrors checks what PGV cannot of a health check at path.
func healthErrors(hc *sluicev1.HealthCheck, path string, add func(path, format string, args ...any)) {
	if hc == nil {
		return
	}
	h := hc.GetHttp()
	if h == nil {
		return
	}
	if fault := methodFault(h.GetMethod()); fault != "" {
		add(path+".http.method", "%s", fault)
	}
	if p := h.GetPath(); p != "" && (p[0] != '/' || !isAttrValue(strings.ReplaceAll(p, ";", ""))) {
		add(path+".http.path", "%q must start with / and have no spaces or control characters", p)
	}
	if host := h.GetHost(); !isAttrValue(host) {
		add(path+".http.host", "%q may not contain spaces or control characters", host)
	}
	if _, err := ParseStatusSpec(h.GetExpectedStatus()); err != nil {
		add(path+".http.expected_status", "%v", err)
	}
}

// DefaultBaseEjectionTime is an outlier_detection's base_ejection_time
// when the snapshot leaves it out; validation and the dataplane share it.
const DefaultBaseEjectionTime = 30 * time.Second

// DefaultMaxEjectionTime is an outlier_detection's max_ejection_time when
// the snapshot leaves it out, unless base_ejection_time is longer: then
// the cap is the base time (as in Envoy). See MaxEjectionTime.
const DefaultMaxEjectionTime = 300 * time.Second

// MaxEjectionTime is the cap a node puts on od's ejections: its
// max_ejection_time, or when that is left out the longer of
// DefaultMaxEjectionTime and the base time. (Validation refuses a cap set
// below the base time.)
func MaxEjectionTime(od *sluicev1.OutlierDetection) time.Duration {
	if set := od.GetMaxEjectionTime(); set != nil {
		return set.AsDuration()
	}
	return max(DefaultMaxEjectionTime, BaseEjectionTime(od))
}

// BaseEjectionTime is od's base_ejection_time, or DefaultBaseEjectionTime
// when it is left out (or 0).
func BaseEjectionTime(od *sluicev1.OutlierDetection) time.Duration {
	if d := od.GetBaseEjectionTime().AsDuration(); d > 0 {
		return d
	}
	return DefaultBaseEjectionTime
}

// outlierErrors checks what PGV cannot of an outlier_detection block at
// path: that something can eject, and that the cap on one ejection is not
// below the first ejection's length.
func outlierErrors(od *sluicev1.OutlierDetection, path string, add func(path, format string, args ...any)) {
	if od == nil {
		return
	}
	if od.ConsecutiveConnectFailures != nil && od.GetConsecutiveConnectFailures() == 0 &&
		od.Consecutive_5Xx != nil && od.GetConsecutive_5Xx() == 0 {
		add(path, "consecutive_connect_failures and consecutive_5xx are both 0: nothing would eject (leave outlier_detection out to turn it off)")
	}
	if od.MaxEjectionTime == nil {
		return // the default cap grows to the base time
	}
	base, what := od.GetBaseEjectionTime().AsDuration(), ""
	if od.BaseEjectionTime == nil {
		base, what = DefaultBaseEjectionTime, ", the default"
	}
	if max := od.GetMaxEjectionTime().AsDuration(); max < base {
		add(path+".max_ejection_time", "%v is shorter than base_ejection_time (%v%s): the cap must allow a first ejection", max, base, what)
	}
}

// errorPageErrors checks a listener's error pages.
func errorPageErrors(pages []*sluicev1.ErrorPage, path string, add func(path, format string, args ...any)) {
	seen := map[uint32]int{}
	for i, ep := range pages {
		p := fmt.Sprintf("%s[%d]", path, i)
		if first, dup := seen[ep.GetStatus()]; dup {
			add(p+".status", "%d already has a page at %s[%d]", ep.GetStatus(), path, first)
		}
		seen[ep.GetStatus()] = i
		switch {
		case ep.GetBody() == "" && ep.GetRedirect() == "":
			add(p, "needs a body or a redirect")
		case ep.GetBody() != "" && ep.GetRedirect() != "":
			add(p+".redirect", "a page has a body or a redirect, not both")
		}
		if ep.GetRedirect() == "" && ep.GetRedirectCode() != 0 {
			add(p+".redirect_code", "only allowed with redirect")
		}
		if ep.GetRedirect() != "" && ep.GetContentType() != "" {
			add(p+".content_type", "only allowed with body")
		}
		if ct := ep.GetContentType(); !isFieldValue(ct) {
			add(p+".content_type", "%q may not contain control characters or start or end with a space", ct)
		}
		if r := ep.GetRedirect(); r != "" && !isAttrValue(strings.ReplaceAll(r, ";", "")) {
			add(p+".redirect", "%q may not contain spaces or control characters", r)
		}
	}
}

// isCookieValue reports whether s is made of RFC 6265 cookie-octets.
func isCookieValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

// isFieldValue reports whether s can be sent as an HTTP field value as is.
func isFieldValue(s string) bool {
	if s != strings.TrimSpace(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isAttrValue reports whether s can be a cookie attribute value.
func isAttrValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ';' {
			return false
		}
	}
	return true
}

// shortEnum is an enum value's name as YAML writes it, without its type
// prefix.
func shortEnum(e interface{ String() string }) string {
	name := e.String()
	if i := strings.Index(name, "_KEY_"); i >= 0 {
		return name[i+len("_KEY_"):]
	}
	return name
}

// standardMethods are RFC 9110's methods and PATCH (RFC 5789).
var standardMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// methodFault says what is wrong with m as an HTTP method, "" if nothing
// (or m is empty). Methods are case-sensitive (RFC 9110 §9.1): "get" is
// a method of its own, which no client sends, so a standard method in
// another case is taken for the mistake it almost surely is.
func methodFault(m string) string {
	if m == "" {
		return ""
	}
	if !IsToken(m) {
		return fmt.Sprintf("%q is not an HTTP method", m)
	}
	for _, std := range standardMethods {
		if m != std && strings.EqualFold(m, std) {
			return fmt.Sprintf("%q: methods are case-sensitive, did you mean %q?", m, std)
		}
	}
	return ""
}

// notHeaderName is the fault of a header name that is not a token
// (IsToken), with the name quoted.
const notHeaderName = "%q is not a valid header name (letters, digits and !#$%%&'*+-.^_`|~ only)"

// IsToken reports whether s is an RFC 9110 token, the syntax of methods and
// of header, cookie and (here) query parameter names.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// bindAddr is a listener address reduced to what decides whether two binds
// collide.
type bindAddr struct {
	port uint16
	ip   netip.Addr // invalid for the empty host
}

// overlaps reports whether binding a and b together fails with EADDRINUSE:
// same port and the same IP, or one is a wildcard that covers the other (the
// empty host and [::] are dual-stack in Go, 0.0.0.0 covers IPv4 only).
func (a bindAddr) overlaps(b bindAddr) bool {
	if a.port != b.port {
		return false
	}
	covers := func(w, o netip.Addr) bool {
		switch {
		case !w.IsValid() || w == netip.IPv6Unspecified():
			return true
		case w == netip.IPv4Unspecified():
			return !o.IsValid() || o.Is4() || o.Is4In6() || o == netip.IPv6Unspecified()
		}
		return false
	}
	return a.ip == b.ip || covers(a.ip, b.ip) || covers(b.ip, a.ip)
}

// parseAddress checks a host:port address. It returns "" or the fault's
// message. Listener hosts must be an IP address, "localhost" or empty;
// endpoint hosts an IP address or a DNS name.
func parseAddress(addr string, listener bool) (bindAddr, string) {
	if scheme, rest, ok := strings.Cut(addr, "://"); ok {
		hostPort, _, _ := strings.Cut(rest, "/")
		return bindAddr{}, fmt.Sprintf("must be host:port, not a URL: write %q, without %s:// or a path", hostPort, scheme)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			msg := "must be host:port (" + ae.Err + ")"
			if ae.Err == "too many colons in address" {
				msg = "must be host:port; write IPv6 addresses in brackets, e.g. [::1]:8080"
			}
			return bindAddr{}, msg
		}
		return bindAddr{}, "must be host:port"
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || strings.TrimLeft(port, "0123456789") != "" {
		return bindAddr{}, fmt.Sprintf("port %q must be a number from 1 to 65535", port)
	}
	b := bindAddr{port: uint16(p)}
	if listener {
		switch host {
		case "":
		case "localhost":
			b.ip = netip.AddrFrom4([4]byte{127, 0, 0, 1}) // what net.Listen binds
		default:
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return bindAddr{}, fmt.Sprintf("host %q must be an IP address, \"localhost\" or empty", host)
			}
			b.ip = ip
		}
		return b, ""
	}
	if host == "" {
		return bindAddr{}, "host is missing"
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return b, ""
	}
	if !isDNSName(host) {
		return bindAddr{}, fmt.Sprintf("host %q must be an IP address or a DNS name", host)
	}
	return b, ""
}

// isDNSName reports whether h is a syntactically valid DNS name: dot-separated
// labels of letters, digits, '-' and '_' (service labels), 1..63 bytes each,
// not starting or ending with '-', 253 bytes at most, an optional final dot.
func isDNSName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	allDigits := true
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
				allDigits = false
			default:
				return false
			}
		}
	}
	// "1.2.3.999" is a broken IP address, not a name.
	return !allDigits
}

// pgvError is implemented by every <Message>ValidationError of
// protoc-gen-validate; pgvMulti by every <Message>MultiError.
type pgvError interface {
	Field() string
	Reason() string
	Key() bool
	Cause() error
}

type pgvMulti interface {
	AllErrors() []error
}

// walkPGV flattens a PGV error tree into field errors. PGV names fields by
// their Go names ("Endpoints[1]"); the descriptor turns them back into the
// proto names users write ("endpoints[1]").
func walkPGV(err error, md protoreflect.MessageDescriptor, prefix string, out *Errors) {
	if m, ok := err.(pgvMulti); ok {
		for _, e := range m.AllErrors() {
			walkPGV(e, md, prefix, out)
		}
		return
	}
	v, ok := err.(pgvError)
	if !ok {
		*out = append(*out, FieldError{Path: prefix, Message: err.Error()})
		return
	}
	goName, suffix := v.Field(), ""
	if i := strings.IndexByte(goName, '['); i >= 0 {
		goName, suffix = goName[:i], goName[i:]
	}
	var fd protoreflect.FieldDescriptor
	name := snakeCase(goName)
	if md != nil {
		fd = fieldByGoName(md, goName)
		if fd != nil {
			name = string(fd.Name())
		}
	}
	path := joinPath(prefix, name+suffix)
	if cause := v.Cause(); cause != nil && isPGV(cause) && fd != nil {
		sub := fd.Message()
		if fd.IsMap() {
			sub = fd.MapValue().Message()
		}
		if sub != nil {
			walkPGV(cause, sub, path, out)
			return
		}
	}
	msg := humanize(v.Reason(), fd, v.Cause())
	if v.Key() {
		msg = "key " + msg
	}
	*out = append(*out, FieldError{Path: path, Message: msg})
}

func isPGV(err error) bool {
	switch err.(type) {
	case pgvError, pgvMulti:
		return true
	}
	return false
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// fieldByGoName finds the field protoc-gen-go named goName.
func fieldByGoName(md protoreflect.MessageDescriptor, goName string) protoreflect.FieldDescriptor {
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if goCamelCase(string(fd.Name())) == goName {
			return fd
		}
	}
	return nil
}

// goCamelCase is protoc-gen-go's field name mangling (internal/strs).
func goCamelCase(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && i+1 < len(s) && isASCIILower(s[i+1]):
		case c == '.':
			b = append(b, '_')
		case c == '_' && (i == 0 || s[i-1] == '.'):
			b = append(b, 'X')
		case c == '_' && i+1 < len(s) && isASCIILower(s[i+1]):
		case isASCIIDigit(c):
			b = append(b, c)
		default:
			if isASCIILower(c) {
				c -= 'a' - 'A'
			}
			b = append(b, c)
			for ; i+1 < len(s) && isASCIILower(s[i+1]); i++ {
				b = append(b, s[i+1])
			}
		}
	}
	return string(b)
}

func isASCIILower(c byte) bool { return 'a' <= c && c <= 'z' }
func isASCIIDigit(c byte) bool { return '0' <= c && c <= '9' }

// snakeCase is the fallback for a Go name without a descriptor.
func snakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

var (
	reLTE        = regexp.MustCompile(`^value must be less than or equal to (.+)$`)
	reLT         = regexp.MustCompile(`^value must be less than (.+)$`)
	reGTE        = regexp.MustCompile(`^value must be greater than or equal to (.+)$`)
	reGT         = regexp.MustCompile(`^value must be greater than (.+)$`)
	reRangeIncl  = regexp.MustCompile(`^value must be inside range \[(.+), (.+)\]$`)
	reMinLen     = regexp.MustCompile(`^value length must be at least (\d+) (runes|bytes)$`)
	reMaxLen     = regexp.MustCompile(`^value length must be at most (\d+) (runes|bytes)$`)
	reLenBetween = regexp.MustCompile(`^value length must be between (\d+) and (\d+) (runes|bytes), inclusive$`)
	reMaxItems   = regexp.MustCompile(`^value must contain no more than (\d+) (item|pair)\(s\)$`)
	reMinItems   = regexp.MustCompile(`^value must contain at least (\d+) (item|pair)\(s\)$`)
	rePattern    = regexp.MustCompile(`^value does not match regex pattern "(.*)"$`)
	reNotInList  = regexp.MustCompile(`^value must not be in list \[(.*)\]$`)
	reInList     = regexp.MustCompile(`^value must be in list \[(.*)\]$`)
)

// knownPatterns says in words what the API's name patterns mean.
var knownPatterns = map[string]string{
	`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`:    "must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit",
	`^([A-Za-z0-9][A-Za-z0-9._-]{0,62})?$`: "must be empty or 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit",
	`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`:   "must be 1 to 63 letters, digits, '.', '_', '/' or '-', starting with a letter or digit",
	`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`:  "must be 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
}

// humanize turns a PGV reason into the short form users read, e.g. "value
// must be less than or equal to 256" into "must be <= 256".
func humanize(reason string, fd protoreflect.FieldDescriptor, cause error) string {
	unit := func(u string) string {
		if u == "bytes" {
			return "bytes"
		}
		return "characters"
	}
	if m := reLTE.FindStringSubmatch(reason); m != nil {
		return "must be <= " + m[1]
	}
	if m := reLT.FindStringSubmatch(reason); m != nil {
		return "must be < " + m[1]
	}
	if m := reGTE.FindStringSubmatch(reason); m != nil {
		return "must be >= " + m[1]
	}
	if m := reGT.FindStringSubmatch(reason); m != nil {
		return "must be > " + m[1]
	}
	if m := reRangeIncl.FindStringSubmatch(reason); m != nil {
		return "must be between " + m[1] + " and " + m[2]
	}
	if m := reMinLen.FindStringSubmatch(reason); m != nil {
		if m[1] == "1" {
			return "must not be empty"
		}
		return "must be at least " + m[1] + " " + unit(m[2]) + " long"
	}
	if m := reMaxLen.FindStringSubmatch(reason); m != nil {
		return "must be at most " + m[1] + " " + unit(m[2]) + " long"
	}
	if m := reLenBetween.FindStringSubmatch(reason); m != nil {
		return "must be " + m[1] + " to " + m[2] + " " + unit(m[3]) + " long"
	}
	if m := reMaxItems.FindStringSubmatch(reason); m != nil {
		return "must have at most " + m[1] + " " + map[string]string{"item": "items", "pair": "entries"}[m[2]]
	}
	if m := reMinItems.FindStringSubmatch(reason); m != nil {
		return "must have at least " + m[1] + " " + map[string]string{"item": "items", "pair": "entries"}[m[2]]
	}
	if m := rePattern.FindStringSubmatch(reason); m != nil {
		if words, ok := knownPatterns[m[1]]; ok {
			return words
		}
		return "must match " + m[1]
	}
	var ed protoreflect.EnumDescriptor
	if fd != nil {
		ed = fd.Enum()
	}
	if ed != nil {
		switch {
		case reason == "value must be one of the defined enum values":
			return "must be one of " + strings.Join(enumNames(ed, false), ", ")
		case reNotInList.MatchString(reason):
			list := reNotInList.FindStringSubmatch(reason)[1]
			if list == string(ed.Values().ByNumber(0).Name()) {
				return "is required; one of " + strings.Join(enumNames(ed, false), ", ")
			}
			return "must not be " + shortenEnumList(ed, list)
		case reInList.MatchString(reason):
			return "must be one of " + shortenEnumList(ed, reInList.FindStringSubmatch(reason)[1])
		}
	}
	if m := reNotInList.FindStringSubmatch(reason); m != nil {
		return "must not be one of " + m[1]
	}
	if m := reInList.FindStringSubmatch(reason); m != nil {
		list := strings.Fields(m[1])
		if fd != nil && !fd.HasPresence() && len(list) > 1 && list[0] == "0" {
			// 0 is the field left out, which takes its default: not a
			// value to write.
			return "must be one of " + strings.Join(list[1:], " ") + ", or left out"
		}
		return "must be one of " + m[1]
	}
	switch reason {
	case "value is required":
		return "is required"
	case "value is not a valid duration", "value is not a valid timestamp":
		if cause != nil {
			return strings.TrimPrefix(reason, "value ") + " (" + cause.Error() + ")"
		}
	}
	return strings.TrimPrefix(reason, "value ")
}

// shortenEnumList rewrites PGV's "[A_X B_Y]" list of full enum names.
func shortenEnumList(ed protoreflect.EnumDescriptor, list string) string {
	var out []string
	for _, n := range strings.Fields(list) {
		if v := ed.Values().ByName(protoreflect.Name(n)); v != nil {
			out = append(out, enumShortName(v))
		} else {
			out = append(out, n)
		}
	}
	return strings.Join(out, ", ")
}

// sortDocOrder orders faults as their fields appear in a document written in
// field order: by field number and index along the path. Faults with the same
// path keep their order (PGV's before the semantic ones).
func sortDocOrder(errs Errors, md protoreflect.MessageDescriptor) {
	keys := make(map[string][]pathKey, len(errs))
	for _, e := range errs {
		if _, ok := keys[e.Path]; !ok {
			keys[e.Path] = docKey(e.Path, md)
		}
	}
	slices.SortStableFunc(errs, func(a, b FieldError) int {
		return comparePathKeys(keys[a.Path], keys[b.Path])
	})
}

// pathKey is one step of a path: a field number, and an index or map key.
type pathKey struct {
	field int
	index int    // -1 when the step has no index
	key   string // map key
}

func docKey(path string, md protoreflect.MessageDescriptor) []pathKey {
	var out []pathKey
	for _, seg := range splitPath(path) {
		name, idx := seg, ""
		if i := strings.IndexByte(seg, '['); i >= 0 && strings.HasSuffix(seg, "]") {
			name, idx = seg[:i], seg[i+1:len(seg)-1]
		}
		k := pathKey{field: 1 << 30, index: -1}
		var fd protoreflect.FieldDescriptor
		if md != nil {
			fd = md.Fields().ByName(protoreflect.Name(name))
		}
		if fd != nil {
			k.field = int(fd.Number())
		}
		if idx != "" {
			if n, err := strconv.Atoi(idx); err == nil && (fd == nil || !fd.IsMap()) {
				k.index = n
			} else {
				k.index, k.key = 0, idx
			}
		}
		out = append(out, k)
		md = nil
		if fd != nil {
			md = fd.Message()
			if fd.IsMap() {
				md = fd.MapValue().Message()
			}
		}
	}
	return out
}

// splitPath splits "a[0].b[x.y].c" at the dots outside brackets.
func splitPath(path string) []string {
	if path == "" {
		return nil
	}
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(path); i++ {
		switch path[i] {
		case '[':
			depth++
		case ']':
			depth--
		case '.':
			if depth == 0 {
				out = append(out, path[start:i])
				start = i + 1
			}
		}
	}
	return append(out, path[start:])
}

func comparePathKeys(a, b []pathKey) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		if x.field != y.field {
			return x.field - y.field
		}
		if x.index != y.index {
			return x.index - y.index
		}
		if c := strings.Compare(x.key, y.key); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}
