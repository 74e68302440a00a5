package cliflag

import (
	"bytes"
	"flag"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const usage = "Usage: prog [--grace D]\n  -count uint\n    \tthe count\n  -drain-grace duration\n    \tthe drain's grace\n" +
		"  -drain-timeout duration\n    \tthe drain's timeout\n  -grace duration\n    \tthe grace\n  -limit int\n    \tthe limit\n" +
		"  -max-age duration\n    \tthe age\n"
	for _, tt := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{args: []string{"--grace", "3s"}, code: -1},
		{args: []string{"--help"}, code: 0, stdout: usage},
		{args: []string{"-h"}, code: 0, stdout: usage},
		{args: []string{"--bogus"}, code: 2, stderr: "prog: flag provided but not defined: -bogus\nRun 'prog --help' for its flags.\n"},
		{args: []string{"--graec", "3s"}, code: 2, stderr: "prog: flag provided but not defined: -graec, did you mean --grace?\nRun 'prog --help' for its flags.\n"},
		{args: []string{"--max"}, code: 2, stderr: "prog: flag provided but not defined: -max, did you mean --max-age?\nRun 'prog --help' for its flags.\n"},
		// Two flags start with it: no guess.
		{args: []string{"--drain"}, code: 2, stderr: "prog: flag provided but not defined: -drain\nRun 'prog --help' for its flags.\n"},
		{args: []string{"--grace", "30"}, code: 2, stderr: "prog: invalid value \"30\" for flag -grace: parse error (a duration has a unit: 30s, 1m30s, 500ms)\nRun 'prog --help' for its flags.\n"},
		{args: []string{"--limit", "many"}, code: 2, stderr: "prog: invalid value \"many\" for flag -limit: parse error\nRun 'prog --help' for its flags.\n"},
		{args: []string{"--count", "-1"}, code: 2, stderr: "prog: invalid value \"-1\" for flag -count: parse error (a whole number, 0 or more)\nRun 'prog --help' for its flags.\n"},
		{args: []string{"-2.5"}, code: 2, stderr: "prog: flag provided but not defined: -2.5 (no number here is negative)\nRun 'prog --help' for its flags.\n"},
		{args: []string{"--grace", "1s", "extra"}, code: 2, stderr: "prog: unexpected arguments: [\"extra\"] (every setting is a --flag)\nRun 'prog --help' for its flags.\n"},
	} {
		fs := flag.NewFlagSet("prog", flag.ContinueOnError)
		fs.Duration("grace", 0, "the grace")
		fs.Int("limit", 0, "the limit")
		fs.Uint("count", 0, "the count")
		fs.Duration("max-age", 0, "the age")
		fs.Duration("drain-grace", 0, "the drain's grace")
		fs.Duration("drain-timeout", 0, "the drain's timeout")
		fs.Usage = func() {
			fs.Output().Write([]byte("Usage: prog [--grace D]\n"))
			fs.PrintDefaults()
		}
		var stdout, stderr bytes.Buffer
		code := Parse(fs, tt.args, &stdout, &stderr)
		if code != tt.code || stdout.String() != tt.stdout || stderr.String() != tt.stderr {
			t.Errorf("%q: %d, stdout %q, stderr %q\nwant %d, stdout %q, stderr %q", tt.args, code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
		}
		if fs.Output() != &stderr {
			t.Errorf("%q: the flag set writes elsewhere than stderr afterwards", tt.args)
		}
	}
}

func TestVersion(t *testing.T) {
	got := Version("sluice-dp", "v1.2.0-3-gabcdef0")
	if !strings.HasPrefix(got, "sluice-dp v1.2.0-3-gabcdef0 (go") || !strings.Contains(got, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Errorf("Version = %q", got)
	}
}

func TestFromBuild(t *testing.T) {
	rev := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "9b4f951d0c2a"}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tt := range []struct {
		info debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, "v1.2.0"},                               // go install ...@v1.2.0
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev("false")}, "dev-9b4f951"}, // go build in a clone
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev("true")}, "dev-9b4f951-dirty"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"}, // -buildvcs=false
	} {
		if got := fromBuild(&tt.info); got != tt.want {
			t.Errorf("fromBuild(%+v) = %q, want %q", tt.info, got, tt.want)
		}
	}
}
