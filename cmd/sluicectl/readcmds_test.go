package main

import (
	"strings"
	"testing"
)

// TestGetUnknownVersion: get --version of a version that is not stored
// says which versions are, as rollback does, and exits 1.
func TestGetUnknownVersion(t *testing.T) {
	addr := startRealCP(t)
	code, _, stderr := sluicectl(t, addr, "get", "--version", "7")
	if code != 1 || !strings.Contains(stderr, "version 7 is not stored; no version is") {
		t.Errorf("get --version 7 before any apply: status %d, stderr %q; want 1 and %q", code, stderr, "version 7 is not stored; no version is")
	}
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: status %d: %s", code, stderr)
	}
	code, _, stderr = sluicectl(t, addr, "get", "--version", "9")
	want := "sluicectl get: version 9 is not stored; the kept versions are 1 to 1\n"
	if code != 1 || stderr != want {
		t.Errorf("get --version 9: status %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}
