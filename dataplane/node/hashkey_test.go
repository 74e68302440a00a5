package node

import (
	"bytes"
	"testing"
)

func TestQueryParam(t *testing.T) {
	tests := []struct {
		target, name string
		want         string
		found        bool
	}{
		{"/a?user=42&x=1", "user", "42", true},
		{"/a?x=1&user=42", "user", "42", true},
		{"/a?username=1&user=7", "user", "7", true},
		{"/a?user=", "user", "", true},
		{"/a?user=9#frag", "user", "9", true},
		{"/a?x=1", "user", "", false},
		{"/a", "user", "", false},
	}
	for _, tt := range tests {
		got := queryParam([]byte(tt.target), tt.name)
		if (got != nil) != tt.found || string(got) != tt.want {
			t.Errorf("queryParam(%q, %q) = %q (found %v), want %q (found %v)", tt.target, tt.name, got, got != nil, tt.want, tt.found)
		}
	}
}

func TestDomainOnly(t *testing.T) {
	for in, want := range map[string]string{
		"haproxy.1wt.eu":       "1wt",
		"www.example.com:8080": "example",
		"example.com":          "example",
		"localhost:80":         "localhost",
		"10.1.2.3:80":          "10.1.2.3",
		"[::1]:80":             "[::1]",
		"www.example.com.":     "example",
		"example.com.:443":     "example",
		".":                    "",
		"":                     "",
	} {
		if got := string(domainOnly([]byte(in))); got != want {
			t.Errorf("domainOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzHashKeys: the extractors read client input; they must never panic,
// and what they return is part of what they were given.
func FuzzHashKeys(f *testing.F) {
	for _, seed := range []string{"/a?user=1&b=2", "a=1; session=x", "www.example.com.:80", "[::1", "..", "?=&=;", "1.2.3."} {
		f.Add(seed, "user")
	}
	f.Fuzz(func(t *testing.T, in, name string) {
		b := []byte(in)
		for _, got := range [][]byte{queryParam(b, name), domainOnly(b)} {
			if got != nil && !bytes.Contains(b, got) {
				t.Errorf("extracted %q is not part of %q", got, in)
			}
		}
	})
}
