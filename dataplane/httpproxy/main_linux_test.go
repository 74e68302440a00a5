package httpproxy

import (
	"os"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/internal/splice"
)

// TestMain has large bodies between loopback peers spliced, as sluice-dp
// --splice always does, so that the tests cover splicing; eachSpliceMode
// runs a test under the default (splice.Auto) too, which copies them.
func TestMain(m *testing.M) {
	splice.SetMode(splice.Always)
	os.Exit(m.Run())
}

// eachSpliceMode runs f twice: with large bodies between loopback peers
// spliced, then copied as the default mode copies them (splice.Auto),
// checking that a pipe was taken the first time only.
func eachSpliceMode(t *testing.T, f func(t *testing.T)) { spliceModesRun(t, f, true) }

// bothSpliceModes is eachSpliceMode without its check of pipes: for
// close-delimited bodies, which net's ReadFrom splices through pipes of
// its own.
func bothSpliceModes(t *testing.T, f func(t *testing.T)) { spliceModesRun(t, f, false) }

func spliceModesRun(t *testing.T, f func(t *testing.T), checkPipes bool) {
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

// spliceModes are the ways a benchmark of large bodies runs: "spliced",
// as under TestMain, and "copied", as the default mode copies bodies
// between loopback peers; setSpliceMode sets one for the rest of b.
var spliceModes = []string{"spliced", "copied"}

func setSpliceMode(b *testing.B, name string) {
	if name == "copied" {
		splice.SetMode(splice.Auto)
		b.Cleanup(func() { splice.SetMode(splice.Always) })
	}
}
