package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/reflect/protoreflect"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Marshal writes a snapshot as YAML in the style of the user contract:
// fields in declaration order, only the ones that are set, short enum names,
// duration strings, and small nested objects such as endpoints on one line
// in flow style ({ name: web1, address: 127.0.0.1:9001, weight: 2 }).
// Parse(Marshal(s)) equals s.
func Marshal(s *sluicev1.Snapshot) ([]byte, error) {
	n, err := tree(s)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return buf.Bytes(), nil
}

// MarshalJSON writes the same tree as Marshal as indented JSON (snake_case
// keys, short enum names, duration strings), which Parse reads back.
func MarshalJSON(s *sluicev1.Snapshot) ([]byte, error) {
	n, err := tree(s)
	if err != nil {
		return nil, err
	}
	var compact bytes.Buffer
	if err := writeJSON(&compact, n); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func tree(s *sluicev1.Snapshot) (*yaml.Node, error) {
	if s == nil {
		s = &sluicev1.Snapshot{}
	}
	n, err := messageNode(s.ProtoReflect(), 0)
	if err == nil && len(n.Content) == 0 {
		// The empty snapshot says so, as a file must to be applied
		// ("{}" reads as one cut short): clusters: [].
		n.Content = append(n.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: tagStr, Value: "clusters"},
			&yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle})
	}
	return n, err
}

// flowWidth is the longest one-line rendering of a nested object that is
// written in flow style.
const flowWidth = 100

// messageNode renders m as a mapping. depth 0 is the snapshot, 1 a resource
// (cluster, listener: always block style); deeper objects made only of
// scalars go on one line when they are short.
func messageNode(m protoreflect.Message, depth int) (*yaml.Node, error) {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	fields := m.Descriptor().Fields()
	flat, width := true, 2
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		v, err := fieldNode(fd, m.Get(fd), depth)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fd.Name(), err)
		}
		if v.Kind != yaml.ScalarNode {
			flat = false
		}
		width += len(fd.Name()) + len(v.Value) + 4
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: tagStr, Value: string(fd.Name())}, v)
	}
	if depth >= 2 && flat && width <= flowWidth && !strings.ContainsAny(flatValues(n), "\n") {
		n.Style = yaml.FlowStyle
	}
	return n, nil
}

func flatValues(n *yaml.Node) string {
	var b strings.Builder
	for _, c := range n.Content {
		b.WriteString(c.Value)
	}
	return b.String()
}

func fieldNode(fd protoreflect.FieldDescriptor, v protoreflect.Value, depth int) (*yaml.Node, error) {
	switch {
	case fd.IsList():
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			e, err := valueNode(fd, l.Get(i), depth+1)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			n.Content = append(n.Content, e)
		}
		return n, nil
	case fd.IsMap():
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		type entry struct {
			k string
			v protoreflect.Value
		}
		var entries []entry
		v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			entries = append(entries, entry{k.String(), v})
			return true
		})
		slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.k, b.k) })
		for _, e := range entries {
			kn := &yaml.Node{Kind: yaml.ScalarNode, Tag: tagStr, Value: e.k}
			if fd.MapKey().Kind() != protoreflect.StringKind {
				kn.Tag = ""
				if fd.MapKey().Kind() == protoreflect.BoolKind {
					kn.Tag = tagBool
				} else {
					kn.Tag = tagInt
				}
			}
			vn, err := valueNode(fd.MapValue(), e.v, depth+1)
			if err != nil {
				return nil, fmt.Errorf("[%s]: %w", e.k, err)
			}
			n.Content = append(n.Content, kn, vn)
		}
		return n, nil
	}
	return valueNode(fd, v, depth+1)
}

// valueNode renders one singular value of fd.
func valueNode(fd protoreflect.FieldDescriptor, v protoreflect.Value, depth int) (*yaml.Node, error) {
	if md := fd.Message(); md != nil && !scalarMessage(md) {
		return messageNode(v.Message(), depth)
	}
	text, tag, err := scalarText(fd, v)
	if err != nil {
		return nil, err
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: text}, nil
}

// writeJSON renders the YAML tree as compact JSON, keeping key order.
func writeJSON(b *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, n.Content[i].Value)
			b.WriteByte(':')
			if err := writeJSON(b, n.Content[i+1]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(b, c); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		switch n.Tag {
		case tagInt, tagBool:
			b.WriteString(n.Value)
		case tagFloat:
			switch n.Value {
			case ".nan":
				writeJSONString(b, "NaN")
			case ".inf":
				writeJSONString(b, "Infinity")
			case "-.inf":
				writeJSONString(b, "-Infinity")
			default:
				b.WriteString(n.Value)
			}
		default:
			writeJSONString(b, n.Value)
		}
	default:
		return fmt.Errorf("snapshot: unexpected YAML node kind %v", n.Kind)
	}
	return nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode's newline
}
