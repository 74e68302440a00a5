package snapshot

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Source says where each part of a snapshot [LoadSource] read was
// written: in which file, at which line. Validation speaks of the merged
// snapshot ("clusters[7].endpoints[0].weight"); Source turns such a path
// into the one a user finds in the file, and its line.
type Source struct {
	clusters, listeners []origin // by index in the merged snapshot
	roots               map[string]*yaml.Node
}

// origin is where one cluster or listener of a merged snapshot came from:
// its file and its index there.
type origin struct {
	file  string
	index int
}

// add records the clusters and listeners of file, parsed as root, as the
// next ones of the merged snapshot.
func (s *Source) add(file string, root *yaml.Node, clusters, listeners []int) {
	if s.roots == nil {
		s.roots = map[string]*yaml.Node{}
	}
	s.roots[file] = root
	for _, i := range clusters {
		s.clusters = append(s.clusters, origin{file, i})
	}
	for _, i := range listeners {
		s.listeners = append(s.listeners, origin{file, i})
	}
}

// Place returns path (of the merged snapshot) as it reads in the file that
// holds it, and where: "file:line" of the deepest part of path the file
// writes out (a field left at its default is placed at its parent).
// written says whether the file writes path itself: false for a field left
// out. It returns path and "" for a path it cannot place.
func (s *Source) Place(path string) (local, at string, written bool) {
	if s == nil {
		return path, "", false
	}
	segs := splitPath(path)
	if len(segs) == 0 {
		return path, "", false
	}
	name, idx, ok := indexed(segs[0])
	var list []origin
	switch {
	case !ok:
		return path, "", false
	case name == "clusters":
		list = s.clusters
	case name == "listeners":
		list = s.listeners
	}
	if idx >= len(list) {
		return path, "", false
	}
	o := list[idx]
	segs[0] = fmt.Sprintf("%s[%d]", name, o.index)
	local = strings.Join(segs, ".")
	line, written := lineOf(s.roots[o.file], segs)
	if line == 0 {
		return local, "", false
	}
	return local, fmt.Sprintf("%s:%d", o.file, line), written
}

// indexed splits a path step "name[i]" into name and i.
func indexed(seg string) (name string, i int, ok bool) {
	open := strings.IndexByte(seg, '[')
	if open < 0 || !strings.HasSuffix(seg, "]") {
		return seg, 0, false
	}
	i, err := strconv.Atoi(seg[open+1 : len(seg)-1])
	return seg[:open], i, err == nil && i >= 0
}

// lineOf is the line of the deepest node of root that the path steps segs
// reach: a key's line for a field, an item's for a list index; written
// says whether they reach the last step. 0 when root is nil.
func lineOf(root *yaml.Node, segs []string) (line int, written bool) {
	if root == nil {
		return 0, false
	}
	// The snapshot parsed, so its aliases and merges resolve; the budget
	// only keeps a walk of a pathological document bounded.
	d := &decoder{budget: math.MaxInt}
	n := d.resolve(root, "")
	line = root.Line
	for _, seg := range segs {
		name, key := seg, ""
		if open := strings.IndexByte(seg, '['); open >= 0 && strings.HasSuffix(seg, "]") {
			name, key = seg[:open], seg[open+1:len(seg)-1]
		}
		next, at := d.entry(n, name)
		if next == nil {
			return line, false
		}
		n, line = next, at
		if key == "" {
			continue
		}
		switch n.Kind {
		case yaml.SequenceNode:
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(n.Content) {
				return line, false
			}
			n = d.resolve(n.Content[i], "")
			line = n.Line
		case yaml.MappingNode:
			// A map field: the entry's key.
			if n, at = d.entry(n, key); n == nil {
				return line, false
			}
			line = at
		}
		// A scalar for a list of one (method: GET) is its item [0].
	}
	return line, true
}

// entry is the value of key in mapping n (merged entries too) and the
// line of its key; nil when n is no mapping or has no such key.
func (d *decoder) entry(n *yaml.Node, key string) (*yaml.Node, int) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, 0
	}
	for _, p := range d.pairs(n, "") {
		if p.k.Value == key {
			return d.resolve(p.v, ""), p.k.Line
		}
	}
	return nil, 0
}
