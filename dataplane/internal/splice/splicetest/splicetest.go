// Package splicetest runs the tests of the proxies that splice (httpproxy,
// tcpproxy) under splice's modes. Their tests run on loopback, whose
// bytes a node copies by default (splice.Auto); Main has them spliced, as
// sluice-dp --splice always does, so that the tests cover splicing, and
// Each runs a test under the default too.
package splicetest

import (
	"os"
	"runtime"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/internal/splice"
)

// Main runs a package's tests with every large transfer spliced
// (splice.Always): call it from the package's TestMain.
func Main(m *testing.M) {
	splice.SetMode(splice.Always)
	os.Exit(m.Run())
}

// Each runs f twice, as the subtests "spliced" (splice.Always) and
// "copied" (splice.Auto, which copies the bytes of loopback peers). With
// checkPipes it checks that a pipe was taken the first time only; leave
// it off for transfers that net's ReadFrom splices through pipes of its
// own. Off Linux, where nothing is spliced, it runs f once.
func Each(t *testing.T, f func(t *testing.T), checkPipes bool) {
	if runtime.GOOS != "linux" {
		f(t)
		return
	}
	for _, spliced := range []bool{true, false} {
		name := "copied"
		if spliced {
			name = "spliced"
		}
		t.Run(name, func(t *testing.T) {
			if !spliced {
				splice.SetMode(splice.Auto)
				defer splice.SetMode(splice.Always)
			}
			gets := splice.Gets()
			f(t)
			if took := splice.Gets() > gets; checkPipes && took != spliced {
				t.Errorf("took a pipe: %v, want %v", took, spliced)
			}
		})
	}
}

// Modes are the ways a benchmark of large transfers runs, by the names
// of Each's subtests; Set sets one for the rest of b. Off Linux there is
// only "copied".
func Modes() []string {
	if runtime.GOOS != "linux" {
		return []string{"copied"}
	}
	return []string{"spliced", "copied"}
}

// Set sets the mode named by one of Modes for the rest of t: a benchmark
// of large transfers, or a test of what copying them does.
func Set(t testing.TB, name string) {
	if name == "copied" {
		splice.SetMode(splice.Auto)
		t.Cleanup(func() { splice.SetMode(splice.Always) })
	}
}
