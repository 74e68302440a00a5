package httpproxy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// ErrorPage replaces one of the answers the proxy makes itself when it
// cannot get a response from an endpoint: 503 (no endpoint), 502 (connect
// failure, bad or cut response) or 504 (response timeout). This is
// HAProxy's "errorfile" (a body of one's own) and "errorloc" (a redirect).
// A 502, 503 or 504 relayed from an endpoint is never replaced.
//
// The response keeps the proxy's framing: a Content-Length of its own, the
// connection staying open when the request was read in full, no body for a
// HEAD request, and "Cache-Control: no-cache".
type ErrorPage struct {
	// ContentType of Body. Default "text/html; charset=utf-8".
	ContentType string
	// Body is the body sent with the error status.
	Body []byte
	// Redirect, if set, makes the answer a redirect to this URL instead:
	// status RedirectCode with "Location: Redirect" and an empty body.
	// Body and ContentType are then ignored.
	Redirect string
	// RedirectCode is 301, 302, 303, 307 or 308. Default 302.
	RedirectCode int
}

// DefaultErrorPageContentType is the ContentType of an ErrorPage that sets
// none.
const DefaultErrorPageContentType = "text/html; charset=utf-8"

// maxErrorPageBody bounds ErrorPage.Body.
const maxErrorPageBody = 1 << 20

var redirectText = map[int]string{
	301: "Moved Permanently",
	302: "Found",
	303: "See Other",
	307: "Temporary Redirect",
	308: "Permanent Redirect",
}

// validate checks the page for status.
func (p *ErrorPage) validate(status int) error {
	switch status {
	case 502, 503, 504:
	default:
		return fmt.Errorf("httpproxy: error page for status %d: only 502, 503 and 504 can be replaced", status)
	}
	if p.Redirect != "" {
		if !validFieldValue(p.Redirect) {
			return fmt.Errorf("httpproxy: error page for status %d: redirect %q is not a valid Location value", status, p.Redirect)
		}
		if p.RedirectCode != 0 && redirectText[p.RedirectCode] == "" {
			return fmt.Errorf("httpproxy: error page for status %d: redirect code %d is not 301, 302, 303, 307 or 308", status, p.RedirectCode)
		}
		return nil
	}
	if p.ContentType != "" && !validFieldValue(p.ContentType) {
		return fmt.Errorf("httpproxy: error page for status %d: content type %q is not a valid field value", status, p.ContentType)
	}
	if len(p.Body) > maxErrorPageBody {
		return fmt.Errorf("httpproxy: error page for status %d: body of %d bytes is over %d", status, len(p.Body), maxErrorPageBody)
	}
	return nil
}

// validFieldValue: not empty, no control character but HTAB, no
// surrounding whitespace.
func validFieldValue(v string) bool {
	if v == "" || v[0] == ' ' || v[0] == '\t' || v[len(v)-1] == ' ' || v[len(v)-1] == '\t' {
		return false
	}
	return isValue(v)
}

// Validate reports what in c the proxy cannot use: an ErrorPages key other
// than 502, 503 or 504, a redirect code other than 301, 302, 303, 307 or
// 308, a Location or content type that is not a valid field value, a body
// over 1 MiB, or a negative MaxConnectionAge or MaxRequestsPerConnection.
// NewServer and SetConfig do not fail: they leave out an error page that
// does not validate (its status gets the built-in answer) and treat a
// negative limit as none.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxConnectionAge < 0 {
		errs = append(errs, fmt.Errorf("httpproxy: negative MaxConnectionAge %v", c.MaxConnectionAge))
	}
	if c.MaxRequestsPerConnection < 0 {
		errs = append(errs, fmt.Errorf("httpproxy: negative MaxRequestsPerConnection %d", c.MaxRequestsPerConnection))
	}
	for _, status := range slices.Sorted(maps.Keys(c.ErrorPages)) {
		p := c.ErrorPages[status]
		if err := p.validate(status); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Variants of a built error page by what its Connection field says.
const (
	pageClose     = iota // Connection: close
	pageKeepAlive        // Connection: keep-alive, for an HTTP/1.0 client
	pagePersist          // nothing: an HTTP/1.1 client keeps the connection
	pageVariants
)

// builtPage is an ErrorPage as written: the whole response in each
// Connection variant, built once per configuration so that answering with
// it copies nothing and allocates nothing. A HEAD request gets the first
// head[v] bytes.
type builtPage struct {
	resp [pageVariants][]byte
	head [pageVariants]int
}

// buildErrorPages returns the pages of m that validate, by status-502.
func buildErrorPages(m map[int]ErrorPage) (out [3]*builtPage) {
	for status, p := range m {
		if p.validate(status) != nil {
			continue
		}
		out[status-502] = buildPage(status, &p)
	}
	return out
}

func buildPage(status int, p *ErrorPage) *builtPage {
	var common []byte
	body := p.Body
	if p.Redirect != "" {
		code := p.RedirectCode
		if code == 0 {
			code = 302
		}
		body = nil
		common = append(common, "HTTP/1.1 "...)
		common = strconv.AppendInt(common, int64(code), 10)
		common = append(common, ' ')
		common = append(common, redirectText[code]...)
		common = append(common, "\r\nLocation: "...)
		common = append(common, p.Redirect...)
	} else {
		ct := p.ContentType
		if ct == "" {
			ct = DefaultErrorPageContentType
		}
		common = append(common, "HTTP/1.1 "...)
		common = strconv.AppendInt(common, int64(status), 10)
		common = append(common, ' ')
		common = append(common, statusText[status]...)
		common = append(common, "\r\nContent-Type: "...)
		common = append(common, ct...)
	}
	common = append(common, "\r\nCache-Control: no-cache\r\nContent-Length: "...)
	common = strconv.AppendInt(common, int64(len(body)), 10)
	common = append(common, "\r\n"...)
	return buildVariants(common, body)
}

// buildVariants builds a response of the proxy's own from its head up to
// the Connection field (common, each line ending in CRLF) and its body.
func buildVariants(common, body []byte) *builtPage {
	bp := new(builtPage)
	for v, conn := range [pageVariants]string{
		pageClose:     "Connection: close\r\n",
		pageKeepAlive: "Connection: keep-alive\r\n",
		pagePersist:   "",
	} {
		r := make([]byte, 0, len(common)+len(conn)+2+len(body))
		r = append(r, common...)
		r = append(r, conn...)
		r = append(r, "\r\n"...)
		bp.head[v] = len(r)
		bp.resp[v] = append(r, body...)
	}
	return bp
}

// bytes returns what to write for a client of HTTP/1.minor, keeping the
// connection open or not, for a HEAD request or not; like
// appendStatusResponse.
func (bp *builtPage) bytes(minor uint8, keepAlive, head bool) []byte {
	v := pagePersist
	switch {
	case !keepAlive:
		v = pageClose
	case minor == 0:
		v = pageKeepAlive
	}
	if head {
		return bp.resp[v][:bp.head[v]]
	}
	return bp.resp[v]
}

// errorPage returns the built page that replaces the proxy's own answer
// with status, or nil.
func (c *Config) errorPage(status int) *builtPage {
	if c == nil || status < 502 || status > 504 {
		return nil
	}
	return c.pages[status-502]
}
