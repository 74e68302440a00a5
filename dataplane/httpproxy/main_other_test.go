//go:build !linux

package httpproxy

import "testing"

// eachSpliceMode runs f once: off Linux there is no splicing to choose.
func eachSpliceMode(t *testing.T, f func(t *testing.T)) { f(t) }

// bothSpliceModes runs f once, as eachSpliceMode.
func bothSpliceModes(t *testing.T, f func(t *testing.T)) { f(t) }

// spliceModes: off Linux bodies are only copied.
var spliceModes = []string{"copied"}

func setSpliceMode(*testing.B, string) {}
