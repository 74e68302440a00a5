package labels

import "testing"

func TestCheck(t *testing.T) {
	for _, k := range []string{"zone", "a", "example.com/role", "tier-1_x"} {
		if err := CheckKey(k); err != nil {
			t.Errorf("CheckKey(%q) = %v, want nil", k, err)
		}
	}
	for k, want := range map[string]string{
		"a b": `"a b" is not a label key (letters, digits and ._/-, starting with a letter or digit, at most 63)`,
		"-a":  `"-a" is not a label key (letters, digits and ._/-, starting with a letter or digit, at most 63)`,
		"":    `"" is not a label key (letters, digits and ._/-, starting with a letter or digit, at most 63)`,
	} {
		if err := CheckKey(k); err == nil || err.Error() != want {
			t.Errorf("CheckKey(%q) = %v, want %q", k, err, want)
		}
	}
	for _, v := range []string{"", "a", "eu-west-1", "v1.2:3/x", "é"} {
		if err := CheckValue("k", v); err != nil {
			t.Errorf("CheckValue(%q) = %v, want nil", v, err)
		}
	}
	for v, want := range map[string]string{
		"b c":   `k's value "b c" has ' ', which no selector can write: use letters, digits and ._/:- and the like`,
		"b=c":   `k's value "b=c" has '=', which no selector can write: use letters, digits and ._/:- and the like`,
		"(x)":   `k's value "(x)" has '(', which no selector can write: use letters, digits and ._/:- and the like`,
		"a\x1b": `k's value "a\x1b" has '\x1b', which no selector can write: use letters, digits and ._/:- and the like`,
	} {
		if err := CheckValue("k", v); err == nil || err.Error() != want {
			t.Errorf("CheckValue(%q) = %v, want %q", v, err, want)
		}
	}
	long := string(make([]byte, MaxValue+1))
	if err := CheckValue("k", long); err == nil || err.Error() != "k's value is 257 bytes, more than 256" {
		t.Errorf("CheckValue(257 bytes) = %v", err)
	}
}

func TestText(t *testing.T) {
	if got := Text(map[string]string{"zone": "a", "role": "edge", "gpu": ""}); got != "gpu=,role=edge,zone=a" {
		t.Errorf("Text = %q", got)
	}
	if got := Text(nil); got != "" {
		t.Errorf("Text(nil) = %q", got)
	}
}
