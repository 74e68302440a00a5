package snapshot

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/envoyproxy/protoc-gen-validate/validate"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Parse decodes a snapshot from YAML (or JSON, which is YAML) strictly; see
// the package documentation for the rules. source names the input in error
// messages ("(web.yaml:4)"); with an empty source they say "(line 4)". On any
// fault Parse returns nil and [Errors] listing every fault it found, in
// document order. It does not [Validate].
func Parse(data []byte, source string) (*sluicev1.Snapshot, error) {
	s, _, err := parse(data, source)
	return s, err
}

// parse is Parse, and returns the document's root node, nil when data held
// no document with content: an empty input, or one of comments only,
// parses as an empty snapshot.
func parse(data []byte, source string) (_ *sluicev1.Snapshot, root *yaml.Node, _ error) {
	s := &sluicev1.Snapshot{}
	d := &decoder{source: source, budget: 1000 + 8*len(data)}
	if strings.EqualFold(filepath.Ext(source), ".json") {
		// JSON allows tabs wherever it allows spaces, YAML does not allow
		// them as indentation. A valid JSON text has no raw tab inside a
		// string, so the replacement changes nothing else.
		data = bytes.ReplaceAll(data, []byte{'\t'}, []byte{' '})
	}
	// Documents that hold nothing (a stray "---" at the end) are ignored;
	// two with content are refused, as their merge would be a guess.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, Errors{d.syntaxError(data, err)}
		}
		if len(doc.Content) != 1 || isNull(doc.Content[0]) {
			continue
		}
		if root != nil {
			return nil, root, Errors{{Message: "only one YAML document is allowed; put each in its own file" + d.at(doc.Line)}}
		}
		root = doc.Content[0]
	}
	if root != nil {
		d.message(root, s.ProtoReflect(), "")
	}
	if len(d.errs) > 0 {
		// The walk is in document order except for merged (<<) entries,
		// whose faults belong on the lines that hold them.
		idx := make([]int, len(d.errs))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return d.lines[a] - d.lines[b] })
		out := make(Errors, len(idx))
		for i, j := range idx {
			out[i] = d.errs[j]
		}
		return nil, root, out
	}
	return s, root, nil
}

// decoder walks a yaml.Node tree along message descriptors.
type decoder struct {
	source string
	errs   Errors
	lines  []int // the line of each fault in errs
	// budget bounds the nodes visited, so aliases ("billion laughs") cannot
	// blow a small document up into a huge walk.
	budget  int
	visited int
	active  map[*yaml.Node]bool // aliases being expanded, to catch cycles
}

var reYAMLLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 syntax error into a fault with the line of the
// problem. yaml.v3 reports many errors ("did not find expected key") at or
// before the start of the enclosing construct, not where the problem is, so
// the line is found again: for JSON from encoding/json's
// offset, for block YAML as the first prefix of the document that fails the
// same way, and for an unclosed flow collection ({ ... or [ ...) as the line
// that opens it.
func (d *decoder) syntaxError(data []byte, err error) FieldError {
	msg := err.Error()
	m := reYAMLLine.FindStringSubmatch(msg)
	if m == nil {
		msg = strings.TrimPrefix(msg, "yaml: ")
		if d.source != "" {
			msg += " (" + d.source + ")"
		}
		return FieldError{Message: "YAML syntax error: " + msg}
	}
	line, _ := strconv.Atoi(m[1])
	problem := m[2]
	if problem != "found unexpected end of stream" {
		line = problemLine(data, line, problem)
	}
	if !strings.Contains(problem, "tab") && tabIndented(data, line) {
		// yaml.v3 names the tab only in some places: elsewhere it is
		// "found character that cannot start any token".
		problem += "; the line is indented with a tab, and YAML indents with spaces only"
	}
	return FieldError{Message: "YAML syntax error: " + problem + d.at(line)}
}

// tabIndented says whether line (from 1) of data has a tab in its
// indentation.
func tabIndented(data []byte, line int) bool {
	for range line - 1 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return false
		}
		data = data[i+1:]
	}
	indent := data[:len(data)-len(bytes.TrimLeft(data, " \t"))]
	return bytes.IndexByte(indent, '\t') >= 0
}

// problemLine finds the line of a yaml.v3 parser error reported at line.
func problemLine(data []byte, line int, problem string) int {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		var v any
		var se *json.SyntaxError
		if err := json.Unmarshal(data, &v); errors.As(err, &se) {
			return 1 + bytes.Count(data[:se.Offset], []byte{'\n'})
		}
	}
	if strings.Contains(problem, "','") {
		return line + 1 // the flow collection opens on the line after
	}
	lines := bytes.SplitAfter(data, []byte{'\n'})
	fails := func(k int) bool {
		var n yaml.Node
		err := yaml.Unmarshal(bytes.Join(lines[:k], nil), &n)
		return err != nil && strings.HasSuffix(err.Error(), ": "+problem)
	}
	lo, hi := max(line-1, 1), len(lines)
	if hi-lo <= 200 {
		for k := lo; k <= hi; k++ {
			if fails(k) {
				return k
			}
		}
		return line + 1
	}
	if !fails(hi) {
		return line + 1
	}
	for lo < hi { // smallest failing prefix, when failing is monotone
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// at is the position suffix of a message: " (line 4)" or " (web.yaml:4)".
func (d *decoder) at(line int) string {
	if d.source == "" {
		return fmt.Sprintf(" (line %d)", line)
	}
	return fmt.Sprintf(" (%s:%d)", d.source, line)
}

func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...) + d.at(n.Line)})
	d.lines = append(d.lines, n.Line)
}

// resolve follows aliases and counts the node against the budget. It returns
// nil (after recording a fault) when the walk must stop.
func (d *decoder) resolve(n *yaml.Node, path string) *yaml.Node {
	d.visited++
	if d.visited > d.budget {
		if d.visited == d.budget+1 {
			d.fail(path, n, "document expands too many aliases")
		}
		return nil
	}
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.fail(path, n, "unknown alias %q", n.Value)
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node holds, for "expected X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	}
	switch t := n.ShortTag(); t {
	case "!!str":
		return fmt.Sprintf("the string %q", truncate(n.Value))
	case "!!int":
		return "the integer " + truncate(n.Value)
	case "!!float":
		return "the number " + truncate(n.Value)
	case "!!bool":
		return "the boolean " + n.Value
	case "!!null":
		return "null"
	case "!!timestamp":
		return "the timestamp " + truncate(n.Value)
	default:
		return "a value tagged " + t
	}
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// pair is one key and value of a mapping, after merge keys are expanded.
type pair struct{ k, v *yaml.Node }

// pairs lists a mapping's entries, refusing non-scalar and duplicate keys and
// expanding YAML merge keys (<<: *defaults), whose entries give way to the
// mapping's own.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var own, merged []pair
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergePairs(v, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(path, k, "keys must be plain strings, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(joinPath(path, k.Value), k, "duplicate key, first set on line %d", first)
			continue
		}
		seen[k.Value] = k.Line
		own = append(own, pair{k, v})
	}
	for _, p := range merged {
		if _, ok := seen[p.k.Value]; !ok {
			seen[p.k.Value] = p.k.Line
			own = append(own, p)
		}
	}
	return own
}

func (d *decoder) mergePairs(v *yaml.Node, path string) []pair {
	if v = d.resolve(v, path); v == nil {
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		if d.active[v] {
			d.fail(path, v, "merge refers to the mapping that contains it")
			return nil
		}
		if d.active == nil {
			d.active = map[*yaml.Node]bool{}
		}
		d.active[v] = true
		defer delete(d.active, v)
		return d.pairs(v, path)
	case yaml.SequenceNode:
		// Earlier mappings take precedence over later ones.
		var out []pair
		seen := map[string]bool{}
		for _, m := range v.Content {
			for _, p := range d.mergePairs(m, path) {
				if !seen[p.k.Value] {
					seen[p.k.Value] = true
					out = append(out, p)
				}
			}
		}
		return out
	}
	d.fail(path, v, "merge key (<<) needs a mapping or a list of mappings, got %s", describe(v))
	return nil
}

// message decodes a mapping into m.
func (d *decoder) message(n *yaml.Node, m protoreflect.Message, path string) {
	alias := n
	if n = d.resolve(n, path); n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "expected a mapping, got %s", describe(n))
		return
	}
	if d.active[n] {
		d.fail(path, alias, "alias refers to a mapping that contains it")
		return
	}
	if d.active == nil {
		d.active = map[*yaml.Node]bool{}
	}
	d.active[n] = true
	defer delete(d.active, n)

	md := m.Descriptor()
	fields := md.Fields()
	oneofs := map[protoreflect.FullName]string{}
	for _, p := range d.pairs(n, path) {
		name := p.k.Value
		fd := fields.ByName(protoreflect.Name(name))
		fpath := joinPath(path, name)
		if fd == nil {
			msg := "unknown field"
			if near := Closest(name, fieldNames(md)); near != "" {
				msg += fmt.Sprintf(", did you mean %q?", near)
			}
			d.fail(fpath, p.k, "%s", msg)
			continue
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if other, ok := oneofs[od.FullName()]; ok {
				d.fail(fpath, p.k, "cannot be set together with %s (one of %s)", other, oneofNames(od))
				continue
			}
			oneofs[od.FullName()] = name
		}
		d.field(p.v, m, fd, fpath)
	}
}

func fieldNames(md protoreflect.MessageDescriptor) []string {
	fields := md.Fields()
	out := make([]string, fields.Len())
	for i := range out {
		out[i] = string(fields.Get(i).Name())
	}
	return out
}

func oneofNames(od protoreflect.OneofDescriptor) string {
	var out []string
	for i := 0; i < od.Fields().Len(); i++ {
		out = append(out, string(od.Fields().Get(i).Name()))
	}
	return strings.Join(out, ", ")
}

// field decodes n into field fd of m. A null value leaves the field unset.
func (d *decoder) field(n *yaml.Node, m protoreflect.Message, fd protoreflect.FieldDescriptor, path string) {
	orig := n
	if n = d.resolve(n, path); n == nil || isNull(n) {
		return
	}
	switch {
	case fd.IsMap():
		d.mapField(n, m, fd, path)
	case fd.IsList():
		if n.Kind != yaml.SequenceNode {
			// A list of one scalar may be written as the scalar alone
			// (method: GET). Not so for lists of messages: a mapping
			// where the clusters go is more likely a mistake (clusters
			// keyed by name) than a list of one.
			if n.Kind != yaml.ScalarNode || fd.Message() != nil && !scalarMessage(fd.Message()) {
				d.fail(path, n, "expected a list, got %s", describe(n))
				return
			}
			list := m.Mutable(fd).List()
			if v, ok := d.value(n, fd, path, list.NewElement); ok {
				list.Append(v)
			}
			return
		}
		if len(n.Content) == 0 && conditionLists[m.Descriptor().FullName()] {
			// Protobuf cannot tell an empty list from none, and no
			// condition holds for everything: a templated blacklist that
			// came out empty would deny all traffic.
			d.fail(path, n, "an empty list sets no condition, which widens the match (to all traffic, when it is the only one): give it values or drop the field")
			return
		}
		if len(n.Content) == 0 && fd.FullName() == trustedSources {
			// The same for the peers whose PROXY headers are believed: a
			// list that came out empty would trust every one.
			d.fail(path, n, "an empty list trusts every peer's PROXY header, as leaving the field out does: give it addresses or drop the field")
			return
		}
		list := m.Mutable(fd).List()
		for i, e := range n.Content {
			epath := fmt.Sprintf("%s[%d]", path, i)
			if e = d.resolve(e, epath); e == nil {
				return
			}
			if isNull(e) {
				d.fail(epath, e, "must not be null")
				continue
			}
			if v, ok := d.value(e, fd, epath, list.NewElement); ok {
				list.Append(v)
			}
		}
	default:
		if fd.Message() != nil && !scalarMessage(fd.Message()) {
			n = orig // message() resolves it again, and reports an alias cycle at the alias
		}
		if v, ok := d.value(n, fd, path, func() protoreflect.Value { return m.NewField(fd) }); ok {
			m.Set(fd, v)
		}
	}
}

// conditionLists are the messages whose lists are conditions of a rule's
// match, where an empty list is refused.
var conditionLists = map[protoreflect.FullName]bool{
	(*sluicev1.Match)(nil).ProtoReflect().Descriptor().FullName():       true,
	(*sluicev1.StringMatch)(nil).ProtoReflect().Descriptor().FullName(): true,
	(*sluicev1.HeaderMatch)(nil).ProtoReflect().Descriptor().FullName(): true,
	(*sluicev1.QueryMatch)(nil).ProtoReflect().Descriptor().FullName():  true,
}

// trustedSources is the field of proxy_protocol where an empty list is
// refused.
var trustedSources = (*sluicev1.ProxyProtocolAccept)(nil).ProtoReflect().Descriptor().Fields().ByName("trusted_sources").FullName()

func (d *decoder) mapField(n *yaml.Node, m protoreflect.Message, fd protoreflect.FieldDescriptor, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "expected a mapping, got %s", describe(n))
		return
	}
	mp := m.Mutable(fd).Map()
	kd, vd := fd.MapKey(), fd.MapValue()
	for _, p := range d.pairs(n, path) {
		epath := fmt.Sprintf("%s[%s]", path, p.k.Value)
		var key protoreflect.MapKey
		switch kd.Kind() {
		case protoreflect.StringKind:
			if !utf8.ValidString(p.k.Value) {
				d.fail(epath, p.k, "key must be valid UTF-8")
				continue
			}
			key = protoreflect.ValueOfString(p.k.Value).MapKey()
		default:
			kv, ok := d.scalar(p.k, kd, epath)
			if !ok {
				continue
			}
			key = kv.MapKey()
		}
		v := d.resolve(p.v, epath)
		if v == nil {
			return
		}
		if isNull(v) {
			d.fail(epath, v, "must not be null")
			continue
		}
		if val, ok := d.value(v, vd, epath, mp.NewValue); ok {
			mp.Set(key, val)
		}
	}
}

// value decodes one singular value (a list element or map value too) of
// field fd. newMsg makes the message to decode into for message fields.
func (d *decoder) value(n *yaml.Node, fd protoreflect.FieldDescriptor, path string, newMsg func() protoreflect.Value) (protoreflect.Value, bool) {
	if md := fd.Message(); md != nil {
		v := newMsg()
		if scalarMessage(md) {
			return v, d.scalarMessage(n, v.Message(), path)
		}
		before := len(d.errs)
		d.message(n, v.Message(), path)
		return v, len(d.errs) == before
	}
	return d.scalar(n, fd, path)
}

// scalarMessage decodes a Duration or Timestamp from a string.
func (d *decoder) scalarMessage(n *yaml.Node, m protoreflect.Message, path string) bool {
	name := m.Descriptor().FullName()
	what := `a duration like "3s", "1m30s" or "250ms"`
	if name == timestampName {
		what = "an RFC 3339 time like 2006-01-02T15:04:05Z"
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.fail(path, n, "expected %s, got %s", what, describe(n))
		return false
	}
	var sec int64
	var nanos int32
	var err error
	if name == durationName {
		sec, nanos, err = parseDuration(n.Value)
	} else {
		sec, nanos, err = parseTimestamp(n.Value)
	}
	if err != nil {
		d.fail(path, n, "invalid %s %q: expected %s", map[bool]string{true: "duration", false: "time"}[name == durationName], truncate(n.Value), what)
		return false
	}
	f := m.Descriptor().Fields()
	m.Set(f.ByNumber(1), protoreflect.ValueOfInt64(sec))
	m.Set(f.ByNumber(2), protoreflect.ValueOfInt32(nanos))
	return true
}

// scalar decodes a scalar of a non-message field, strictly: the YAML type
// must be the field's type (no "2" for 2, no yes for true).
func (d *decoder) scalar(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) (protoreflect.Value, bool) {
	var z protoreflect.Value
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n, "expected %s, got %s", expected(fd), describe(n))
		return z, false
	}
	tag := n.ShortTag()
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if tag != "!!bool" {
			d.fail(path, n, "expected true or false, got %s", describe(n))
			return z, false
		}
		return protoreflect.ValueOfBool(strings.EqualFold(n.Value, "true")), true

	case protoreflect.StringKind:
		if tag != "!!str" {
			d.fail(path, n, "expected a string, got %s; %s", describe(n), stringHint(fd, n))
			return z, false
		}
		if !utf8.ValidString(n.Value) {
			d.fail(path, n, "must be valid UTF-8")
			return z, false
		}
		return protoreflect.ValueOfString(n.Value), true

	case protoreflect.BytesKind:
		if tag != "!!str" && tag != "!!binary" {
			d.fail(path, n, "expected base64 text, got %s", describe(n))
			return z, false
		}
		text := strings.Join(strings.Fields(n.Value), "")
		b, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			if b, err = base64.RawStdEncoding.DecodeString(text); err != nil {
				d.fail(path, n, "invalid base64")
				return z, false
			}
		}
		return protoreflect.ValueOfBytes(b), true

	case protoreflect.EnumKind:
		ed := fd.Enum()
		valid := strings.Join(enumNames(ed, false), ", ")
		if tag != "!!str" {
			d.fail(path, n, "expected one of %s, got %s", valid, describe(n))
			return z, false
		}
		ev := enumByName(ed, n.Value)
		if ev == nil {
			msg := fmt.Sprintf("unknown value %q; valid: %s", truncate(n.Value), valid)
			if near := Closest(n.Value, enumNames(ed, false)); near != "" {
				msg = fmt.Sprintf("unknown value %q, did you mean %q? valid: %s", truncate(n.Value), near, valid)
			}
			d.fail(path, n, "%s", msg)
			return z, false
		}
		return protoreflect.ValueOfEnum(ev.Number()), true

	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f, ok := parseFloat(n, tag)
		if !ok {
			d.fail(path, n, "expected a number, got %s", describe(n))
			return z, false
		}
		if fd.Kind() == protoreflect.FloatKind {
			if !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) > math.MaxFloat32 {
				d.fail(path, n, "%s is out of range for float", truncate(n.Value))
				return z, false
			}
			return protoreflect.ValueOfFloat32(float32(f)), true
		}
		return protoreflect.ValueOfFloat64(f), true
	}

	// Integers.
	lo, hi, signed, bits := intRange(fd.Kind())
	if tag != "!!int" && !(tag == "!!float" && isDigits(n.Value)) {
		d.fail(path, n, "expected an integer, got %s", describe(n))
		return z, false
	}
	text := strings.ReplaceAll(n.Value, "_", "")
	if sign, digits := splitSign(text); len(digits) > 1 && digits[0] == '0' && digits[1] >= '0' && digits[1] <= '9' {
		// 010 is 8 to YAML 1.1 readers (kubectl's), 10 to YAML 1.2 ones;
		// 08 is a float to the first. Neither guess is safe to make.
		d.fail(path, n, "%s has a leading zero, which some YAML readers take as octal: write %s%s", truncate(n.Value), sign, cmp.Or(strings.TrimLeft(digits, "0"), "0"))
		return z, false
	}
	outOfRange := func() (protoreflect.Value, bool) {
		if r, ok := ruleRange(fd); ok {
			// The range the field takes, not the one of its type.
			d.fail(path, n, "%s is out of range: must be %s", truncate(n.Value), r)
			return z, false
		}
		d.fail(path, n, "%s is out of range for %s (%s to %s)", truncate(n.Value), fd.Kind(), lo, hi)
		return z, false
	}
	if signed {
		i, err := strconv.ParseInt(text, 0, bits)
		if err != nil {
			return outOfRange()
		}
		if bits == 32 {
			return protoreflect.ValueOfInt32(int32(i)), true
		}
		return protoreflect.ValueOfInt64(i), true
	}
	if strings.HasPrefix(text, "-") {
		return outOfRange()
	}
	u, err := strconv.ParseUint(strings.TrimPrefix(text, "+"), 0, bits)
	if err != nil {
		return outOfRange()
	}
	if bits == 32 {
		return protoreflect.ValueOfUint32(uint32(u)), true
	}
	return protoreflect.ValueOfUint64(u), true
}

// stringHint says how to write the scalar n as the string field fd takes.
// Quoting is the fix but for an address given as a port alone, which
// quoted would be refused for its missing host.
func stringHint(fd protoreflect.FieldDescriptor, n *yaml.Node) string {
	if fd.Name() != "address" || n.ShortTag() != "!!int" || strings.Trim(n.Value, "0123456789") != "" {
		return "quote it to make it a string"
	}
	if fd.ContainingMessage().Name() == "Listener" {
		return fmt.Sprintf("write host:port, \"127.0.0.1:%s\", or \":%s\" for every address", n.Value, n.Value)
	}
	return fmt.Sprintf("write host:port, as \"127.0.0.1:%s\"", n.Value)
}

// splitSign splits the sign (+, - or none) off a number's text.
func splitSign(s string) (sign, rest string) {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		return s[:1], s[1:]
	}
	return "", s
}

func isDigits(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return s != "" && strings.Trim(s, "0123456789_") == ""
}

func intRange(k protoreflect.Kind) (lo, hi string, signed bool, bits int) {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return strconv.Itoa(math.MinInt32), strconv.Itoa(math.MaxInt32), true, 32
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.FormatInt(math.MinInt64, 10), strconv.FormatInt(math.MaxInt64, 10), true, 64
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "0", strconv.FormatUint(math.MaxUint32, 10), false, 32
	}
	return "0", strconv.FormatUint(math.MaxUint64, 10), false, 64
}

func parseFloat(n *yaml.Node, tag string) (float64, bool) {
	switch tag {
	case "!!int":
		text := strings.ReplaceAll(n.Value, "_", "")
		if i, err := strconv.ParseInt(text, 0, 64); err == nil {
			return float64(i), true
		}
		if u, err := strconv.ParseUint(text, 0, 64); err == nil {
			return float64(u), true
		}
		return 0, false
	case "!!float":
		switch strings.ToLower(strings.TrimPrefix(n.Value, "+")) {
		case ".inf":
			return math.Inf(1), true
		case "-.inf":
			return math.Inf(-1), true
		case ".nan":
			return math.NaN(), true
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		return f, err == nil
	case "!!str":
		// JSON has no literal for these; accept protojson's spelling.
		switch n.Value {
		case "NaN":
			return math.NaN(), true
		case "Infinity":
			return math.Inf(1), true
		case "-Infinity":
			return math.Inf(-1), true
		}
	}
	return 0, false
}

// expected says what a field takes, for type errors.
func expected(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return "true or false"
	case protoreflect.StringKind:
		return "a string"
	case protoreflect.BytesKind:
		return "base64 text"
	case protoreflect.EnumKind:
		return "one of " + strings.Join(enumNames(fd.Enum(), false), ", ")
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "a number"
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return "a mapping"
	}
	return "an integer"
}

// ruleRange is the range of values the validation rules of integer field
// fd allow, as text ("0 to 256"), when they bound it above; ok is false
// without such a bound.
func ruleRange(fd protoreflect.FieldDescriptor) (_ string, ok bool) {
	rules, _ := proto.GetExtension(fd.Options(), validate.E_Rules).(*validate.FieldRules)
	var min, max string
	var empty bool // 0 is allowed too: the field left out
	// A field without rules has nil rules, whose getters give nil.
	u32, u64, i32 := rules.GetUint32(), rules.GetUint64(), rules.GetInt32()
	switch {
	case u32 != nil && u32.Lte != nil:
		min, max, empty = strconv.FormatUint(uint64(u32.GetGte()), 10), strconv.FormatUint(uint64(u32.GetLte()), 10), u32.GetIgnoreEmpty()
	case u64 != nil && u64.Lte != nil:
		min, max, empty = strconv.FormatUint(u64.GetGte(), 10), strconv.FormatUint(u64.GetLte(), 10), u64.GetIgnoreEmpty()
	case i32 != nil && i32.Lte != nil:
		min, max, empty = strconv.FormatInt(int64(i32.GetGte()), 10), strconv.FormatInt(int64(i32.GetLte()), 10), i32.GetIgnoreEmpty()
	default:
		return "", false
	}
	text := min + " to " + max
	if empty && min != "0" {
		text += ", or left out"
	}
	return text, true
}
