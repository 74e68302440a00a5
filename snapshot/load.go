package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Load reads a snapshot from a file, or from a directory: every *.yaml, *.yml
// and *.json file directly in it (not in subdirectories; names starting with
// "." are skipped, as editors leave those behind), in name order, merged into
// one snapshot by concatenating their clusters and listeners. Given several
// paths, as kubectl apply takes several -f, it merges the files of each in
// the order given. A cluster or listener name defined in two files is an
// error naming both files. A file with nothing in it (or comments only)
// adds nothing, but a file, or a set of files, that lists no clusters and
// no listeners is refused: most likely it was cut short (after
// "clusters:") or emptied by mistake, and applied it would remove every
// cluster and listener (`clusters: []` says so on purpose). Faults come
// back as [Errors]; Load does not [Validate].
func Load(paths ...string) (*sluicev1.Snapshot, error) {
	s, _, err := LoadSource(paths...)
	return s, err
}

// LoadSource is [Load], and says where in the files each part of the
// snapshot was written, for faults found later.
func LoadSource(paths ...string) (*sluicev1.Snapshot, *Source, error) {
	if len(paths) == 0 {
		return nil, nil, errors.New("no snapshot file or directory given")
	}
	var files []string
	// Each file's clean path, to the directory that named it ("" for none),
	// so that a file given twice is refused rather than merged twice.
	named := map[string]string{}
	dirs := map[string]bool{}
	add := func(f, dir string) error {
		first, twice := named[filepath.Clean(f)]
		switch {
		case !twice:
			named[filepath.Clean(f)] = dir
			files = append(files, f)
			return nil
		case first == "" && dir == "":
			return fmt.Errorf("%s is given twice", f)
		case first == "":
			return fmt.Errorf("%s is given twice: by itself, and in %s", f, dir)
		}
		// A directory's files are named once (the directory twice is
		// refused below), so the second is f itself.
		return fmt.Errorf("%s is given twice: in %s, and by itself", f, first)
	}
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, nil, fileError(err)
		}
		if !fi.IsDir() {
			if len(paths) == 1 {
				data, err := os.ReadFile(path)
				if err != nil {
					return nil, nil, fileError(err)
				}
				return ParseFile(data, path)
			}
			if err := add(path, ""); err != nil {
				return nil, nil, err
			}
			continue
		}
		if dirs[filepath.Clean(path)] {
			return nil, nil, fmt.Errorf("%s is given twice", path)
		}
		dirs[filepath.Clean(path)] = true
		in, err := snapshotFiles(path)
		if err != nil {
			return nil, nil, err
		}
		for _, f := range in {
			if err := add(f, path); err != nil {
				return nil, nil, err
			}
		}
	}
	return merge(files, strings.Join(paths, ", "))
}

// snapshotFiles lists the snapshot files of directory dir, in name order.
func snapshotFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fileError(err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		switch strings.ToLower(filepath.Ext(name)) {
		case ".yaml", ".yml", ".json":
		default:
			continue
		}
		if strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		files = append(files, filepath.Join(dir, name))
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no .yaml, .yml or .json files in the directory", dir)
	}
	return files, nil
}

// merge parses files, in their order, into one snapshot; from names them
// all (the directory, or the paths given) in the fault of a set that lists
// nothing.
func merge(files []string, from string) (*sluicev1.Snapshot, *Source, error) {
	src := &Source{}
	merged := &sluicev1.Snapshot{}
	var errs Errors
	lists := false // a file wrote clusters or listeners; empty ones ("nothing here yet") add nothing
	// Where each name was defined first: its file, parsed as root, and its
	// index there; placed at a line only for a fault.
	type defined struct {
		file string
		root *yaml.Node
		i    int
	}
	clusterAt := map[string]defined{}
	listenerAt := map[string]defined{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, FieldError{Message: fileError(err).Error()})
			continue
		}
		s, root, err := parse(data, f)
		if err != nil {
			var es Errors
			if errors.As(err, &es) {
				errs = append(errs, es...)
			} else {
				errs = append(errs, FieldError{Message: f + ": " + err.Error()})
			}
			continue
		}
		var clusters, listeners []int // the indexes in f of those merged
		for i, c := range s.GetClusters() {
			if first, dup := clusterAt[c.GetName()]; dup && first.file != f {
				errs = append(errs, FieldError{Message: fmt.Sprintf("cluster %q is defined in both %s and %s", c.GetName(),
					itemAt(first.root, first.file, "clusters", first.i), itemAt(root, f, "clusters", i))})
				continue
			}
			clusterAt[c.GetName()] = defined{f, root, i}
			merged.Clusters = append(merged.Clusters, c)
			clusters = append(clusters, i)
		}
		for i, l := range s.GetListeners() {
			if first, dup := listenerAt[l.GetName()]; dup && first.file != f {
				errs = append(errs, FieldError{Message: fmt.Sprintf("listener %q is defined in both %s and %s", l.GetName(),
					itemAt(first.root, first.file, "listeners", first.i), itemAt(root, f, "listeners", i))})
				continue
			}
			listenerAt[l.GetName()] = defined{f, root, i}
			merged.Listeners = append(merged.Listeners, l)
			listeners = append(listeners, i)
		}
		src.add(f, root, clusters, listeners)
		lists = lists || writesLists(root)
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	if !lists {
		return nil, nil, Errors{{Message: "no snapshot file in " + from + " lists clusters or listeners: applied, they would remove every cluster and listener. To remove them all on purpose, give one `clusters: []`"}}
	}
	return merged, src, nil
}

// itemAt is where item i of list (clusters or listeners) of file, parsed
// as root, is written: "file:line", or file alone when that is unknown.
func itemAt(root *yaml.Node, file, list string, i int) string {
	if line, _ := lineOf(root, []string{fmt.Sprintf("%s[%d]", list, i)}); line > 0 {
		return fmt.Sprintf("%s:%d", file, line)
	}
	return file
}

// fileError is err, of reading a snapshot's file or directory, without the
// name of the system call that failed: "a.yaml: no such file or
// directory", not "stat a.yaml: no such file or directory". errors.Is
// still finds fs.ErrNotExist and its kin in it.
func fileError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// ParseFile is [LoadSource] of one file's data, read elsewhere (from
// standard input, say); name names it in faults.
func ParseFile(data []byte, name string) (*sluicev1.Snapshot, *Source, error) {
	s, root, err := parse(data, name)
	if err != nil {
		return nil, nil, err
	}
	if root == nil {
		return nil, nil, Errors{{Message: "the file holds nothing: applied, it would remove every cluster and listener. To remove them all on purpose, give it `clusters: []`"}}
	}
	if !writesLists(root) {
		// "clusters:" and no more, as a file cut short or a template
		// whose variables came out empty leaves it, or "{}".
		return nil, nil, Errors{{Message: "the file lists no clusters and no listeners: applied, it would remove every cluster and listener. To remove them all on purpose, give it `clusters: []`"}}
	}
	src := &Source{}
	src.add(name, root, indexes(len(s.GetClusters())), indexes(len(s.GetListeners())))
	return s, src, nil
}

// writesLists reports whether root, a parsed snapshot document, writes its
// clusters or its listeners as a list, even an empty one: a null value
// ("clusters:" with nothing after it) or a mapping without either does not.
func writesLists(root *yaml.Node) bool {
	if root == nil {
		return false
	}
	d := &decoder{budget: math.MaxInt}
	if root = d.resolve(root, ""); root == nil || root.Kind != yaml.MappingNode {
		return false
	}
	for _, p := range d.pairs(root, "") {
		if p.k.Value != "clusters" && p.k.Value != "listeners" {
			continue
		}
		if v := d.resolve(p.v, ""); v != nil && v.Kind == yaml.SequenceNode {
			return true
		}
	}
	return false
}

// indexes returns 0, 1, ..., n-1.
func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
