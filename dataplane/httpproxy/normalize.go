package httpproxy

// Path normalization (Config.NormalizePath, Config.MergeSlashes).
//
// Rules match the path as the client wrote it, and an endpoint may read
// another path in it: "/x/../admin", "/./admin" and "/%61dmin" are /admin
// to most servers, and "//admin" to those that merge slashes (nginx's
// merge_slashes, Go's ServeMux). A deny rule on /admin holds for them only
// when the path is made canonical before the rules see it, and the
// endpoint is sent the path they saw. That is Envoy's normalize_path and
// merge_slashes, and HAProxy's http-request normalize-uri path-strip-dot,
// path-strip-dotdot, percent-decode-unreserved, percent-to-uppercase and
// path-merge-slashes.

// normalizePath makes p, a path that starts with '/', canonical in place,
// as RFC 3986 §6.2.2 does, and returns its new length, never more than
// len(p): percent-encoded unreserved characters are decoded (%61 is a,
// %2E is .), the hex digits of the other percent-encodings written in
// upper case (%2f is %2F: an encoded slash stays encoded, as it is not a
// separator), then dot-segments removed (RFC 3986 §5.2.4: "/a/./b/../c"
// is "/a/c"; ".." at the root stays at the root). With merge, runs of '/'
// are merged into one first. p holds no stray '%': the request line's
// parser refuses those.
func normalizePath(p []byte, merge bool) int {
	n := decodeUnreserved(p)
	if merge {
		n = mergeSlashes(p[:n])
	}
	return removeDotSegments(p[:n])
}

// canonicalTarget makes the path of r's request-target canonical:
// normalizePath with normalize, mergeSlashes alone without. The query is
// left as it is, and so is the asterisk-form of OPTIONS. A path that
// changes is rewritten in a copy of the head, r's own (the head read may
// be handed on as it came, to the HTTP/2 engine), whose target span shrinks
// by what the path lost; every other span holds.
func (r *Request) canonicalTarget(normalize, merge bool) {
	r.canonical = true
	t := r.target.of(r.head)
	ps := 0 // where the path starts
	if len(t) > 0 && t[0] != '/' {
		a, ok := absoluteAuthority(t)
		if !ok || int(a.end) >= len(t) || t[a.end] != '/' {
			return // "*", or an absolute-form target without a path
		}
		ps = int(a.end)
	}
	qs := len(t) // where the query starts, with its '?'
	if i := indexByte(t[ps:], '?'); i >= 0 {
		qs = ps + i
	}
	if !mayChange(t[ps:qs], normalize, merge) {
		return
	}
	r.canon = append(r.canon[:0], r.head...)
	r.head = r.canon
	t = r.target.of(r.head)
	var n int
	if normalize {
		n = normalizePath(t[ps:qs], merge)
	} else {
		n = mergeSlashes(t[ps:qs])
	}
	if lost := qs - ps - n; lost > 0 {
		copy(t[ps+n:], t[qs:])
		r.target.end -= uint16(lost)
	}
}

// mayChange reports whether path may not be canonical: it has a
// percent-encoding or a segment that starts with a dot (normalize), or
// two slashes in a row (merge).
func mayChange(path []byte, normalize, merge bool) bool {
	for i, c := range path {
		switch {
		case normalize && c == '%':
			return true
		case c != '/' || i+1 == len(path):
		case normalize && path[i+1] == '.', merge && path[i+1] == '/':
			return true
		}
	}
	return false
}

// decodeUnreserved decodes the percent-encoded unreserved characters of p
// in place and upper-cases the hex of the other encodings; it returns the
// new length.
func decodeUnreserved(p []byte) int {
	w := 0
	for r := 0; r < len(p); r++ {
		c := p[r]
		if c == '%' && r+2 < len(p) {
			d := unhex(p[r+1])<<4 | unhex(p[r+2])
			if isUnreserved(d) {
				p[w] = d
			} else {
				p[w], p[w+1], p[w+2] = '%', upperHex(p[r+1]), upperHex(p[r+2])
				w += 2
			}
			w++
			r += 2
			continue
		}
		p[w] = c
		w++
	}
	return w
}

// mergeSlashes merges each run of '/' in p into one, in place, and returns
// the new length.
func mergeSlashes(p []byte) int {
	w := 0
	for r, c := range p {
		if c == '/' && r > 0 && p[r-1] == '/' {
			continue
		}
		p[w] = c
		w++
	}
	return w
}

// removeDotSegments removes the "." and ".." segments of p, which starts
// with '/', in place (RFC 3986 §5.2.4), and returns the new length. A path
// that ends in one ends in '/': "/a/b/.." is "/a/".
func removeDotSegments(p []byte) int {
	w := 0 // p[:w] is the output, which never outgrows what was read
	for i := 0; i < len(p); {
		j := i + 1 // p[i] is '/': the segment is p[i+1:j]
		for j < len(p) && p[j] != '/' {
			j++
		}
		switch seg := p[i+1 : j]; {
		case len(seg) == 1 && seg[0] == '.':
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			for w > 0 { // drop the output's last segment and its '/'
				w--
				if p[w] == '/' {
					break
				}
			}
		default:
			w += copy(p[w:], p[i:j])
			i = j
			continue
		}
		if j == len(p) {
			p[w] = '/' // the path ended in the dot-segment
			w++
		}
		i = j
	}
	if w == 0 {
		p[0] = '/'
		w = 1
	}
	return w
}

// isUnreserved: ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986 §2.3).
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// Canonical reports whether the request's path was made canonical as it
// was read (Config.NormalizePath or MergeSlashes): another engine then
// sends the endpoint URLPath, which the rules saw, not the path as sent.
func (r *Request) Canonical() bool { return r.canonical }
