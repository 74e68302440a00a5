package main

import (
	"strings"
	"testing"
)

// TestConnectionCap: without --max-connections the cap is what the
// open-file limit lets the node proxy, two files a connection; a cap asked
// beyond that is kept, with a warning that names the limit.
func TestConnectionCap(t *testing.T) {
	for _, tt := range []struct {
		asked, files, want int
		warn               string
	}{
		{0, 20000, 9950, ""},
		{0, 1024, 462, ""},
		{0, 150, 25, ""},
		{0, 50, 1, ""},
		{0, 0, 0, ""}, // limit unknown: no cap
		{500, 20000, 500, ""},
		{9950, 20000, 9950, ""},
		{9951, 20000, 9951, "--max-connections 9951 is more than the open-file limit of 20000 lets the node proxy (9950"},
		{50000, 0, 50000, ""},
	} {
		got, warn := connectionCap(tt.asked, tt.files)
		if got != tt.want || (tt.warn == "") != (warn == "") || !strings.HasPrefix(warn, tt.warn) {
			t.Errorf("connectionCap(%d, %d) = %d, %q; want %d, %q…", tt.asked, tt.files, got, warn, tt.want, tt.warn)
		}
	}
}
