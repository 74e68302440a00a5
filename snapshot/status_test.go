package snapshot

import (
	"strings"
	"testing"
)

func TestParseStatusSpec(t *testing.T) {
	for _, tt := range []struct {
		spec    string
		yes, no []int
		str     string // what String gives back
		errorIs string // a substring of the error; "" for none
	}{
		{spec: "", yes: []int{200, 204, 301, 399}, no: []int{199, 400, 500}, str: "200-399"},
		{spec: "  ", yes: []int{200, 399}, no: []int{400}, str: "200-399"},
		{spec: "200-399", yes: []int{200, 399}, no: []int{199, 400}, str: "200-399"},
		{spec: "200", yes: []int{200}, no: []int{199, 201, 204}, str: "200"},
		{spec: "500", yes: []int{500}, no: []int{200}, str: "500"},
		{spec: "200,204", yes: []int{200, 204}, no: []int{201, 203}, str: "200,204"},
		{spec: "200-299,301", yes: []int{200, 250, 299, 301}, no: []int{300, 302}, str: "200-299,301"},
		{spec: " 200 - 299 , 404 ", yes: []int{200, 299, 404}, no: []int{300}, str: "200-299,404"},
		{spec: "100-599", yes: []int{100, 599}, no: []int{99, 600, 0, -1}, str: "100-599"},
		{spec: "204-204", yes: []int{204}, no: []int{203, 205}, str: "204"},
		{spec: strings.Repeat("200,", 15) + "201", yes: []int{201}, str: strings.Repeat("200,", 15) + "201"},

		{spec: "2000", errorIs: `"2000" is not a status code (100-599)`},
		{spec: "600", errorIs: `"600" is not a status code (100-599)`},
		{spec: "099", errorIs: `"099" is not a status code (100-599)`},
		{spec: "+200", errorIs: `"+200" is not a status code`},
		{spec: "2xx", errorIs: `"2xx" is not a status code`},
		{spec: "200-2x0", errorIs: `"2x0" is not a status code`},
		{spec: "399-200", errorIs: `range "399-200" is reversed`},
		{spec: "200,,204", errorIs: `empty code in "200,,204"`},
		{spec: "200,", errorIs: `empty code in "200,"`},
		{spec: "200-", errorIs: `range "200-" needs a code at each end`},
		{spec: "-200", errorIs: `range "-200" needs a code at each end`},
		{spec: "200-300-400", errorIs: `"200-300-400" is not a code or a range`},
		{spec: "200 204", errorIs: `"200 204" is not a status code`},
		{spec: strings.Repeat("200,", 16) + "201", errorIs: "more than 16 codes and ranges"},
	} {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := ParseStatusSpec(tt.spec)
			if tt.errorIs != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errorIs) {
					t.Fatalf("error %v, want one with %q", err, tt.errorIs)
				}
				if s != (StatusSpec{}) {
					t.Errorf("spec %v returned with an error, want the zero StatusSpec", s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, code := range tt.yes {
				if !s.Contains(code) {
					t.Errorf("%d not in %q", code, tt.spec)
				}
			}
			for _, code := range tt.no {
				if s.Contains(code) {
					t.Errorf("%d in %q", code, tt.spec)
				}
			}
			if got := s.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
		})
	}
}

// TestStatusSpecComparable: the same list parses to equal values, so a
// health check spec holding it compares as the checker needs; a different
// list does not.
func TestStatusSpecComparable(t *testing.T) {
	a, _ := ParseStatusSpec("200-299,301")
	b, _ := ParseStatusSpec(" 200-299, 301 ")
	c, _ := ParseStatusSpec("200-299,302")
	if a != b {
		t.Errorf("same list, specs differ: %v, %v", a, b)
	}
	if a == c {
		t.Errorf("different lists, specs equal: %v, %v", a, c)
	}
}

func FuzzParseStatusSpec(f *testing.F) {
	for _, s := range []string{"", "200", "200-399", "200,204", "200-299,301", " 200 - 299 ", "399-200", "2000", "200,,", "-", "1-2-3", "+200", strings.Repeat("100,", 17)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseStatusSpec(in)
		if err != nil {
			if s != (StatusSpec{}) {
				t.Errorf("ParseStatusSpec(%q) returned %v with error %v", in, s, err)
			}
			return
		}
		for _, code := range []int{-1, 0, 99, 600, 1000} {
			if s.Contains(code) {
				t.Errorf("ParseStatusSpec(%q) contains %d", in, code)
			}
		}
		// String reads back to the same set, and to the same value unless
		// it is the zero StatusSpec (DefaultExpect by another name).
		back, err := ParseStatusSpec(s.String())
		if err != nil {
			t.Fatalf("String() of %q = %q, which does not parse: %v", in, s.String(), err)
		}
		if s != (StatusSpec{}) && back != s {
			t.Errorf("%q -> %q -> %v, want %v", in, s.String(), back, s)
		}
		for code := 100; code <= 599; code++ {
			if back.Contains(code) != s.Contains(code) {
				t.Fatalf("%q and %q differ on %d", in, s.String(), code)
			}
		}
	})
}
