package snapshot

import (
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Change is what happened to one named resource between two snapshots.
type Change struct {
	// Op is '+' (added), '-' (removed) or '~' (changed).
	Op byte
	// Kind is the resource type: "cluster" or "listener".
	Kind string
	Name string
	// Fields says, for '~', what changed, one short text per difference:
	// "endpoint web2 weight 1 -> 3", "+endpoint web3", "lb_policy
	// ROUND_ROBIN -> LEAST_CONN", "health_check.interval 2s -> 5s".
	Fields []string
}

// String returns one line: "~ cluster web: endpoint web2 weight 1 -> 3;
// +endpoint web3", "+ listener db".
func (c Change) String() string {
	s := string(c.Op) + " " + c.Kind + " " + c.Name
	if len(c.Fields) > 0 {
		s += ": " + strings.Join(c.Fields, "; ")
	}
	return s
}

// Diff lists what changes from old to new, resource by resource, matched by
// name: every cluster first, then every listener (the order a node applies
// them in). Within a kind, resources come in new's order, then the removed
// ones in old's order. old may be nil (everything is added). A field
// written out as the default it has when unset, or unset where it held its
// default, is no change (see sameMeaning). Diff works on invalid snapshots
// too; a name defined twice is matched on its first definition.
func Diff(old, new *sluicev1.Snapshot) []Change {
	if old == nil {
		old = &sluicev1.Snapshot{}
	}
	if new == nil {
		new = &sluicev1.Snapshot{}
	}
	var out []Change
	om, nm := old.ProtoReflect(), new.ProtoReflect()
	fields := nm.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !fd.IsList() || keyField(fd) == nil {
			continue
		}
		out = append(out, diffResources(singular(fd.Name()), keyField(fd), om.Get(fd).List(), nm.Get(fd).List())...)
	}
	return out
}

func diffResources(kind string, key protoreflect.FieldDescriptor, old, new protoreflect.List) []Change {
	oldByName := indexByName(old, key)
	newByName := indexByName(new, key)
	var out []Change
	for i := 0; i < new.Len(); i++ {
		m := new.Get(i).Message()
		name := m.Get(key).String()
		if newByName[name] != i {
			continue // a duplicate; Validate reports it
		}
		j, ok := oldByName[name]
		if !ok {
			out = append(out, Change{Op: '+', Kind: kind, Name: name})
			continue
		}
		om := old.Get(j).Message()
		if proto.Equal(om.Interface(), m.Interface()) {
			continue // the common case, and cheaper than diffing
		}
		if fields := diffMessage(om, m); len(fields) > 0 {
			out = append(out, Change{Op: '~', Kind: kind, Name: name, Fields: fields})
		}
	}
	for i := 0; i < old.Len(); i++ {
		name := old.Get(i).Message().Get(key).String()
		if _, ok := newByName[name]; !ok && oldByName[name] == i {
			out = append(out, Change{Op: '-', Kind: kind, Name: name})
		}
	}
	return out
}

// diffMessage describes every difference between two messages of one type.
func diffMessage(a, b protoreflect.Message) []string {
	var out []string
	fields := b.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		name := string(fd.Name())
		ha, hb := a.Has(fd), b.Has(fd)
		if !ha && !hb {
			continue
		}
		va, vb := a.Get(fd), b.Get(fd)
		switch {
		case fd.IsList() && keyField(fd) != nil && allNamed(va.List(), keyField(fd)) && allNamed(vb.List(), keyField(fd)):
			out = append(out, diffKeyedList(fd, va.List(), vb.List())...)
		case fd.IsList(), fd.IsMap():
			if !va.Equal(vb) {
				out = append(out, name)
			}
		case fd.Message() != nil && !scalarMessage(fd.Message()):
			if optionBlocks[fd.FullName()] {
				// Absent is as empty: diff what is inside, an unset
				// message reading as one with every field unset.
				ha, hb = true, true
			}
			switch {
			case !ha:
				out = append(out, "+"+name)
			case !hb:
				out = append(out, "-"+name)
			default:
				for _, s := range diffMessage(va.Message(), vb.Message()) {
					if s[0] == '+' || s[0] == '-' {
						// "+health_check.http", not "health_check.+http".
						out = append(out, s[:1]+name+"."+s[1:])
						continue
					}
					out = append(out, name+"."+s)
				}
			}
		default:
			if ha == hb && va.Equal(vb) {
				continue
			}
			da, db := displayValue(a, fd, va, ha), displayValue(b, fd, vb, hb)
			if sameMeaning(fd, da, db) {
				continue
			}
			out = append(out, name+" "+da+" -> "+db)
		}
	}
	return out
}

// diffKeyedList diffs a list of named messages (a cluster's endpoints) by
// name: "+endpoint web3", "-endpoint web1", "endpoint web2 weight 1 -> 3",
// and "endpoints reordered" when the survivors changed order (which matters
// to order-sensitive policies).
func diffKeyedList(fd protoreflect.FieldDescriptor, a, b protoreflect.List) []string {
	key := keyField(fd)
	what := singular(fd.Name())
	aBy, bBy := indexByName(a, key), indexByName(b, key)
	var out, common []string
	for i := 0; i < b.Len(); i++ {
		m := b.Get(i).Message()
		name := m.Get(key).String()
		if bBy[name] != i {
			continue
		}
		j, ok := aBy[name]
		if !ok {
			out = append(out, "+"+what+" "+name)
			continue
		}
		common = append(common, name)
		am := a.Get(j).Message()
		if proto.Equal(am.Interface(), m.Interface()) {
			continue
		}
		for _, s := range diffMessage(am, m) {
			out = append(out, what+" "+name+" "+s)
		}
	}
	for i := 0; i < a.Len(); i++ {
		name := a.Get(i).Message().Get(key).String()
		if _, ok := bBy[name]; !ok && aBy[name] == i {
			out = append(out, "-"+what+" "+name)
		}
	}
	// Survivors in old order; compare with their order in new.
	var oldOrder []string
	for i := 0; i < a.Len(); i++ {
		name := a.Get(i).Message().Get(key).String()
		if _, ok := bBy[name]; ok && aBy[name] == i {
			oldOrder = append(oldOrder, name)
		}
	}
	if strings.Join(oldOrder, "\x00") != strings.Join(common, "\x00") {
		out = append(out, string(fd.Name())+" reordered")
	}
	return out
}

// keyField returns the string field "name" of a list's messages, or nil when
// the list is not of named messages.
func keyField(fd protoreflect.FieldDescriptor) protoreflect.FieldDescriptor {
	if !fd.IsList() || fd.Message() == nil {
		return nil
	}
	k := fd.Message().Fields().ByName("name")
	if k == nil || k.Kind() != protoreflect.StringKind || k.Cardinality() == protoreflect.Repeated {
		return nil
	}
	return k
}

// allNamed reports whether every message of l has a name of its own, as a
// list diffed by name needs. Rule names are optional: a list with an unnamed
// or twice-named rule is diffed as a whole.
func allNamed(l protoreflect.List, key protoreflect.FieldDescriptor) bool {
	seen := make(map[string]bool, l.Len())
	for i := 0; i < l.Len(); i++ {
		name := l.Get(i).Message().Get(key).String()
		if name == "" || seen[name] {
			return false
		}
		seen[name] = true
	}
	return true
}

func indexByName(l protoreflect.List, key protoreflect.FieldDescriptor) map[string]int {
	m := make(map[string]int, l.Len())
	for i := 0; i < l.Len(); i++ {
		name := l.Get(i).Message().Get(key).String()
		if _, dup := m[name]; !dup {
			m[name] = i
		}
	}
	return m
}

// displayValue renders a scalar for a diff line; absent optional fields show
// their default, "1 (default)", or else "unset", and numbers whose 0 stands
// for something else say what.
func displayValue(m protoreflect.Message, fd protoreflect.FieldDescriptor, v protoreflect.Value, has bool) string {
	if !has && (fd.HasPresence() || fd.Message() != nil) {
		if d, ok := derivedDefaults[fd.FullName()]; ok {
			return d(m) + defaultMark
		}
		if d, ok := presenceDefaults[fd.FullName()]; ok {
			return d + defaultMark
		}
		return "unset"
	}
	if !has {
		if d, ok := zeroMeans[fd.FullName()]; ok {
			return d
		}
	}
	if fd.Kind() == protoreflect.EnumKind && v.Enum() == 0 {
		if d, ok := enumDefaults[fd.Enum().FullName()]; ok {
			return d
		}
		return "unset"
	}
	s, _, err := scalarText(fd, v)
	if err != nil {
		return "?"
	}
	if fd.Kind() == protoreflect.StringKind && (s == "" || strings.ContainsAny(s, " \t\n\"")) {
		return strconv.Quote(s)
	}
	return s
}

// defaultMark ends the text of a value that a field has because it is
// unset (or 0): "1 (default)".
const defaultMark = " (default)"

// sameMeaning reports whether two values of a field, as displayValue
// renders them, tell a node the same thing although they differ in the
// snapshot: a default written out where it was left unset ("1 (default)"
// and "1"), or the other way round, or an enum's zero and the value it
// stands for ("ACTIVE" both). Durations compare as lengths of time: the
// default "60s" is a written "1m". Storing such an edit as a new version
// would push every node a snapshot that changes nothing.
func sameMeaning(fd protoreflect.FieldDescriptor, a, b string) bool {
	if a == "?" || b == "?" {
		return false // a value displayValue could not write
	}
	a, b = strings.TrimSuffix(a, defaultMark), strings.TrimSuffix(b, defaultMark)
	if a == b {
		return true
	}
	if fd.Message() == nil || fd.Message().FullName() != durationName {
		return false
	}
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	return errA == nil && errB == nil && da == db
}

// optionBlocks are the messages that only group options: a node runs
// the same whether one is absent or present with every option unset, so a
// diff shows the options that change, not the block ("+http").
var optionBlocks = map[protoreflect.FullName]bool{
	"sluice.v1.Listener.http": true,
	"sluice.v1.Listener.tcp":  true,
}

// enumDefaults names what an enum's zero value means, where it means a
// value of its own: "state DRAINING -> ACTIVE" reads better than "-> unset".
var enumDefaults = map[protoreflect.FullName]string{
	"sluice.v1.AdminState": "ACTIVE",
	"sluice.v1.LbPolicy":   "ROUND_ROBIN (default)",
}

// presenceDefaults are what optional numbers and durations mean when
// unset, as their comments in snapshot.proto say: "weight 3 -> 1
// (default)" tells what the change does, "weight 3 -> unset" does not.
var presenceDefaults = map[protoreflect.FullName]string{
	"sluice.v1.Endpoint.weight":                               "1",
	"sluice.v1.RandomOptions.draws":                           "2",
	"sluice.v1.Cluster.retries":                               "3",
	"sluice.v1.OutlierDetection.consecutive_connect_failures": "5",
	"sluice.v1.OutlierDetection.consecutive_5xx":              "5",
	"sluice.v1.OutlierDetection.max_ejection_percent":         "10",
	"sluice.v1.HealthCheck.fall":                              "3",
	"sluice.v1.HealthCheck.rise":                              "2",
	"sluice.v1.HealthCheck.jitter_percent":                    "10",
	"sluice.v1.Rebalance.tolerance_percent":                   "20",
	"sluice.v1.Rebalance.max_closes_per_second":               "100",
	"sluice.v1.Cluster.connect_timeout":                       "5s",
	"sluice.v1.Cluster.drain_timeout":                         "0s",
	"sluice.v1.Cluster.dns_refresh":                           "30s",
	"sluice.v1.OutlierDetection.base_ejection_time":           "30s",
	"sluice.v1.HealthCheck.interval":                          "2s",
	"sluice.v1.HttpOptions.request_header_timeout":            "10s",
	"sluice.v1.HttpOptions.idle_timeout":                      "60s",
	"sluice.v1.HttpOptions.response_timeout":                  "60s",
	"sluice.v1.HttpOptions.tunnel_idle_timeout":               "1h",
	"sluice.v1.TlsOptions.handshake_timeout":                  "10s",
	"sluice.v1.TcpOptions.inspect_timeout":                    "5s",
	"sluice.v1.TcpOptions.idle_timeout":                       "1h",
	"sluice.v1.Rebalance.min_idle":                            "1s",
	"sluice.v1.StickTable.expire":                             "30m",
	"sluice.v1.ProxyProtocolAccept.timeout":                   "5s",
}

// derivedDefaults are the defaults that depend on another field of the
// same message: an unset max_ejection_time is 300s, or a longer
// base_ejection_time.
var derivedDefaults = map[protoreflect.FullName]func(m protoreflect.Message) string{
	"sluice.v1.OutlierDetection.max_ejection_time": func(m protoreflect.Message) string {
		od, _ := m.Interface().(*sluicev1.OutlierDetection)
		d := MaxEjectionTime(od)
		if d == DefaultMaxEjectionTime {
			return "300s" // as the README and snapshot.proto write it
		}
		s, _ := formatDuration(durationpb.New(d).ProtoReflect()) // a time.Duration is in range
		return s
	},
}

// zeroMeans says what 0 means for the numbers that have no unset state
// but whose 0 is not a count of nothing: "max_header_bytes 16384 -> 0"
// would read as no header allowed.
var zeroMeans = map[protoreflect.FullName]string{
	"sluice.v1.HttpOptions.max_header_bytes":            "65535 (default)",
	"sluice.v1.HttpOptions.max_header_count":            "100 (default)",
	"sluice.v1.HttpOptions.max_uri_length":              "8192 (default)",
	"sluice.v1.HttpOptions.max_concurrent_streams":      "250 (default)",
	"sluice.v1.StickTable.size":                         "100000 (default)",
	"sluice.v1.HttpOptions.max_request_body_bytes":      "0 (no limit)",
	"sluice.v1.HttpOptions.max_requests_per_connection": "0 (no limit)",
	"sluice.v1.Endpoint.max_conn":                       "0 (no cap)",
	"sluice.v1.Cluster.max_queue":                       "0 (no bound)",
	"sluice.v1.Listener.max_connections":                "0 (no cap)",
	"sluice.v1.HashPolicy.balance_factor":               "0 (off)",
	"sluice.v1.Cluster.receive_buffer_bytes":            "0 (sized by the kernel)",
}

// singular turns a list field's name into the word for one element:
// "clusters" -> "cluster", "endpoints" -> "endpoint".
func singular(n protoreflect.Name) string {
	s := string(n)
	switch {
	case strings.HasSuffix(s, "ies"):
		return s[:len(s)-3] + "y"
	case strings.HasSuffix(s, "sses"), strings.HasSuffix(s, "xes"):
		return s[:len(s)-2]
	case strings.HasSuffix(s, "s") && !strings.HasSuffix(s, "ss"):
		return s[:len(s)-1]
	}
	return s
}
