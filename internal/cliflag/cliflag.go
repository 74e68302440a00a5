// Package cliflag parses the flags of Sluice's daemons one way: --help
// prints the usage on stdout, a bad flag or argument prints one line that
// says what was wrong and where the usage is, and --version prints the
// build.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/snapshot"
)

// Parse parses args into fs, whose Usage writes to fs.Output(). It returns
// -1 to go on, else the exit status: 0 after --help (the usage on stdout),
// 2 after a bad flag or a positional argument (one line on stderr, without
// the usage, which would scroll the line away). Afterwards fs writes to
// stderr.
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(stderr)
		return 0
	case err != nil:
		Fail(fs, stderr, "%s", Explain(fs, err))
		return 2
	case fs.NArg() > 0:
		Fail(fs, stderr, "unexpected arguments: %q (every setting is a --flag)", fs.Args())
		return 2
	}
	return -1
}

// Explain is the message of an error from fs.Parse: for a flag fs does not
// have, the one it likely meant (--dryrun: --dry-run; --node: --node-id).
// The flag package words a bad duration or count "parse error", which does
// not say that "30" lacks its unit or that a count cannot be negative, and
// it takes a negative number given as an argument ("set-weight web/web1
// -1") for an unknown flag; Explain says what was wanted.
func Explain(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		if _, err := strconv.ParseFloat(name, 64); err == nil {
			return msg + " (no number here is negative)"
		}
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		near := snapshot.Closest(name, names)
		if near == "" {
			// A flag's first words alone: --node for --node-id.
			var longer []string
			for _, n := range names {
				if strings.HasPrefix(n, name+"-") {
					longer = append(longer, n)
				}
			}
			if len(longer) == 1 {
				near = longer[0]
			}
		}
		if near != "" {
			return msg + fmt.Sprintf(", did you mean --%s?", near)
		}
		return msg
	}
	_, name, ok := strings.Cut(msg, " for flag -")
	if !ok || !strings.HasSuffix(msg, ": parse error") {
		return msg
	}
	name, _, _ = strings.Cut(name, ":")
	if f := fs.Lookup(name); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			switch g.Get().(type) {
			case time.Duration:
				return msg + " (a duration has a unit: 30s, 1m30s, 500ms)"
			case uint, uint64:
				return msg + " (a whole number, 0 or more)"
			}
		}
	}
	return msg
}

// Fail prints a usage error of fs's command on stderr, and where to read
// its usage.
func Fail(fs *flag.FlagSet, stderr io.Writer, format string, args ...any) {
	fmt.Fprintf(stderr, "%s: %s\nRun '%s --help' for its flags.\n", fs.Name(), fmt.Sprintf(format, args...), fs.Name())
}

// Given reports whether the flag name was set on the command line, even
// to its default value.
func Given(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// Version is what --version prints: the program, its version (see
// BuildVersion), and the Go toolchain and platform.
func Version(program, version string) string {
	return fmt.Sprintf("%s %s (%s %s/%s)", program, BuildVersion(version), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// BuildVersion is the version a program was built as. make sets it (-X
// main.version=...) to git describe; a plain go build leaves it "dev", and
// then the module version (go install ...@v1.2.0) or the commit go build
// recorded stands in.
func BuildVersion(version string) string {
	if version == "dev" {
		if info, ok := debug.ReadBuildInfo(); ok {
			version = fromBuild(info)
		}
	}
	return version
}

// fromBuild is the version that a build without make's version records:
// the module's version, else "dev" with the commit and whether the tree
// had changes.
func fromBuild(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	switch {
	case rev == "":
		return "dev"
	case len(rev) > 7:
		rev = rev[:7]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return "dev-" + rev
}
