package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Load reads a snapshot from a file, or from a directory: every *.yaml, *.yml
// and *.json file directly in it (not in subdirectories; names starting with
// "." are skipped, as editors leave those behind), in name order, merged into
// one snapshot by concatenating their clusters and listeners. A cluster or
// listener name defined in two files is an error naming both files. A file
// with nothing in it (or comments only) adds nothing, but a file, or a
// directory, that holds nothing at all is refused: most likely it was cut
// short or emptied by mistake, and applied it would remove every cluster
// and listener (`clusters: []` says so on purpose). Faults come back as
// [Errors]; Load does not [Validate].
func Load(path string) (*sluicev1.Snapshot, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		s, content, err := parse(data, path)
		if err == nil && !content {
			return nil, Errors{{Message: "the file holds nothing: applied, it would remove every cluster and listener. To remove them all on purpose, give it `clusters: []`"}}
		}
		return s, err
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
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
		files = append(files, filepath.Join(path, name))
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no .yaml, .yml or .json files in the directory", path)
	}

	merged := &sluicev1.Snapshot{}
	var errs Errors
	anything := false // a file held content; empty ones ("nothing here yet") add nothing
	clusterFile := map[string]string{}
	listenerFile := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, FieldError{Message: err.Error()})
			continue
		}
		s, content, err := parse(data, f)
		anything = anything || content
		if err != nil {
			var es Errors
			if errors.As(err, &es) {
				errs = append(errs, es...)
			} else {
				errs = append(errs, FieldError{Message: f + ": " + err.Error()})
			}
			continue
		}
		for _, c := range s.GetClusters() {
			if first, dup := clusterFile[c.GetName()]; dup && first != f {
				errs = append(errs, FieldError{Message: fmt.Sprintf("cluster %q is defined in both %s and %s", c.GetName(), first, f)})
				continue
			}
			clusterFile[c.GetName()] = f
			merged.Clusters = append(merged.Clusters, c)
		}
		for _, l := range s.GetListeners() {
			if first, dup := listenerFile[l.GetName()]; dup && first != f {
				errs = append(errs, FieldError{Message: fmt.Sprintf("listener %q is defined in both %s and %s", l.GetName(), first, f)})
				continue
			}
			listenerFile[l.GetName()] = f
			merged.Listeners = append(merged.Listeners, l)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if !anything {
		return nil, Errors{{Message: "every snapshot file in " + path + " is empty: applied, they would remove every cluster and listener. To remove them all on purpose, give one `clusters: []`"}}
	}
	return merged, nil
}
