package groups

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Default is the group a request means when it names none. It exists from
// the start with the empty selector, so that a fleet without groups is one
// group of every node.
const Default = "default"

// namePattern is what a group name may be (the API's rule).
var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// CheckName refuses what is not a group name, saying what one is.
func CheckName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%q is not a valid group name: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters", name)
	}
	return nil
}

// Set is the node groups of one configuration, ready to place nodes. It is
// immutable and safe for concurrent use.
type Set struct {
	groups   []member // sorted by name
	catchAll string   // the group with the empty selector, or ""
}

type member struct {
	name string
	sel  Selector
}

// Compile checks the groups of cfg and returns their Set: every name valid
// and unique, every selector parsed, and at most one catch-all.
func Compile(cfg *sluicev1.FleetConfig) (*Set, error) {
	s := &Set{}
	seen := map[string]bool{}
	for _, g := range cfg.GetGroups() {
		if err := CheckName(g.GetName()); err != nil {
			return nil, err
		}
		if seen[g.GetName()] {
			return nil, fmt.Errorf("group %q is defined twice", g.GetName())
		}
		seen[g.GetName()] = true
		sel, err := Parse(g.GetSelector())
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", g.GetName(), err)
		}
		if sel.Empty() {
			if s.catchAll != "" {
				return nil, fmt.Errorf("groups %q and %q both have an empty selector; only one group may take the nodes no other group matches", s.catchAll, g.GetName())
			}
			s.catchAll = g.GetName()
		}
		s.groups = append(s.groups, member{name: g.GetName(), sel: sel})
	}
	slices.SortFunc(s.groups, func(a, b member) int { return strings.Compare(a.name, b.name) })
	return s, nil
}

// Of returns the group a node with labels belongs to: the one group whose
// non-empty selector matches them, or else the catch-all group. When none
// or several match, group is "" and problem says so, for operators.
func (s *Set) Of(labels map[string]string) (group, problem string) {
	matched := s.matching(labels)
	switch {
	case len(matched) == 1:
		return matched[0], ""
	case len(matched) > 1:
		return "", "its labels match groups " + andList(matched)
	case s.catchAll != "":
		return s.catchAll, ""
	}
	return "", "no group's selector matches its labels"
}

// Overlap returns the groups whose selectors all match labels when there
// are two or more of them (a node with these labels is in no group), else
// nil.
func (s *Set) Overlap(labels map[string]string) []string {
	if m := s.matching(labels); len(m) > 1 {
		return m
	}
	return nil
}

// matching returns the groups whose non-empty selectors match labels.
func (s *Set) matching(labels map[string]string) []string {
	var matched []string
	for _, m := range s.groups {
		if !m.sel.Empty() && m.sel.Matches(labels) {
			matched = append(matched, m.name)
		}
	}
	return matched
}

// Names returns the group names, sorted.
func (s *Set) Names() []string {
	out := make([]string, len(s.groups))
	for i, m := range s.groups {
		out[i] = m.name
	}
	return out
}

// Listed returns the groups with their selectors, for a node told it is in
// none of them: "edge (role=edge) and web (role=web)", the first max of
// them by name, then how many more there are.
func (s *Set) Listed(max int) string {
	if len(s.groups) == 0 {
		return "there are no groups"
	}
	var items []string
	for i, m := range s.groups {
		if i == max {
			items = append(items, fmt.Sprintf("%d more", len(s.groups)-max))
			break
		}
		sel := m.sel.String()
		if m.sel.Empty() {
			sel = "the nodes no other group's selector matches"
		}
		items = append(items, m.name+" ("+sel+")")
	}
	return "the groups are " + andList(items)
}

// andList renders "a and b", "a, b and c".
func andList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// Find returns the group named name in cfg, or nil.
func Find(cfg *sluicev1.FleetConfig, name string) *sluicev1.Group {
	for _, g := range cfg.GetGroups() {
		if g.GetName() == name {
			return g
		}
	}
	return nil
}

// ClusterNames returns the names of the clusters some node of cfg may
// run, sorted, each once.
func ClusterNames(cfg *sluicev1.FleetConfig) []string {
	var names []string
	for _, snap := range runnable(cfg) {
		for _, c := range snap.GetClusters() {
			names = append(names, c.GetName())
		}
	}
	return sortedOnce(names)
}

// ListenerNames returns the names of the listeners some node of cfg may
// run, sorted, each once.
func ListenerNames(cfg *sluicev1.FleetConfig) []string {
	var names []string
	for _, snap := range runnable(cfg) {
		for _, l := range snap.GetListeners() {
			names = append(names, l.GetName())
		}
	}
	return sortedOnce(names)
}

// EndpointNames returns the names of cluster's endpoints in the snapshots
// some node of cfg may run, or of every cluster's when cluster is "",
// sorted, each once.
func EndpointNames(cfg *sluicev1.FleetConfig, cluster string) []string {
	var names []string
	for _, snap := range runnable(cfg) {
		for _, c := range snap.GetClusters() {
			if cluster != "" && c.GetName() != cluster {
				continue
			}
			for _, ep := range c.GetEndpoints() {
				names = append(names, ep.GetName())
			}
		}
	}
	return sortedOnce(names)
}

// runnable returns the snapshots some node of cfg may run: every group's,
// and a rollout's, whose canaries run it (nil where there is none).
func runnable(cfg *sluicev1.FleetConfig) []*sluicev1.Snapshot {
	var snaps []*sluicev1.Snapshot
	for _, g := range cfg.GetGroups() {
		runs := runs(g)
		snaps = append(snaps, runs[:]...)
	}
	return snaps
}

// runs returns the snapshots g's nodes may run: g's, and its rollout's
// (nil when there is none).
func runs(g *sluicev1.Group) [2]*sluicev1.Snapshot {
	return [2]*sluicev1.Snapshot{g.GetSnapshot(), g.GetRollout().GetSnapshot()}
}

// HasCluster reports whether a node of group g may run a cluster named
// name: one of g's snapshot, or of its rollout's, whose canaries run it.
func HasCluster(g *sluicev1.Group, name string) bool {
	for _, snap := range runs(g) {
		for _, c := range snap.GetClusters() {
			if c.GetName() == name {
				return true
			}
		}
	}
	return false
}

func sortedOnce(names []string) []string {
	slices.Sort(names)
	return slices.Compact(names)
}

// Initial is the configuration before anything is stored: the default
// group, catch-all, with nothing applied.
func Initial() *sluicev1.FleetConfig {
	return &sluicev1.FleetConfig{Groups: []*sluicev1.Group{{Name: Default, Snapshot: &sluicev1.Snapshot{}}}}
}
