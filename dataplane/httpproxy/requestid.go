package httpproxy

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
)

// This file gives requests their ids (Config.RequestID), as Envoy's
// x-request-id and nginx's $request_id do: the endpoint gets the id in a
// header, and the access log writes it, so that one request can be
// followed from the balancer's log into the endpoint's.

// maxRequestID bounds an id a trusted peer sent that a request keeps: a
// longer one (or an empty one) is replaced by a new id.
const maxRequestID = 128

// setRequestID gives r its id, when cfg asks for ids: the first value of
// the id field, when the peer is trusted (r.fwd is set) and the value is
// one to keep; else a new UUID, which replaces what the client sent. It
// runs once per request, before its first pick: a request picked again
// keeps its id. Parsing a request head forgets the id of the one before.
func (r *Request) setRequestID(cfg *Config) {
	if cfg == nil || cfg.RequestID == "" {
		return // no ids (parsing left none)
	}
	r.idName, r.id, r.idNew = cfg.RequestID, r.keptID(cfg.RequestID), false
	if r.id == nil {
		newRequestID(&r.idBuf)
		r.id, r.idNew = r.idBuf[:], true
	}
	if cfg.RequestIDInResponse {
		r.idLine = appendFieldLine(r.idLine[:0], r.idName, r.id)
	}
}

// forgetID forgets the id of the request before.
func (r *Request) forgetID() { r.id, r.idNew, r.idLine = nil, false, r.idLine[:0] }

// keptID returns the id of a trusted peer's request that it keeps: the
// first field named name, when its value is one to keep; nil otherwise.
func (r *Request) keptID(name string) []byte {
	if !r.fwd.trusted {
		return nil
	}
	for i := 0; i < r.nf; i++ {
		f := &r.fields[i]
		if f.drop || !equalFoldASCII(f.name.of(r.head), name) {
			continue
		}
		if v := f.value.of(r.head); len(v) > 0 && len(v) <= maxRequestID && visible(v) {
			return v
		}
		return nil // only the first field counts, as for the client
	}
	return nil
}

// appendFieldLine appends the field line "name: value\r\n" to b.
func appendFieldLine[N, V string | []byte](b []byte, name N, value V) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, '\r', '\n')
}

// visible reports whether v is all visible ASCII: an id that goes into
// headers and log lines as it is.
func visible(v []byte) bool {
	for _, c := range v {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// newRequestID writes a random UUID (RFC 9562 version 4) into b, from
// the runtime's per-thread ChaCha8 generator: it takes no lock and makes
// no system call.
func newRequestID(b *[36]byte) {
	var u [16]byte
	binary.LittleEndian.PutUint64(u[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant 10
	const hex = "0123456789abcdef"
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hex[c>>4], hex[c&0x0f]
		j += 2
	}
}

// RequestID is the request's id (Config.RequestID); nil when the listener
// gives none. It must not be modified, and is valid until the request's
// body is read.
func (r *Request) RequestID() []byte { return r.id }

// sendsID reports whether a field named name of r's is one the proxy does
// not forward, as it sends a new id in its place.
func (r *Request) sendsID(name []byte) bool {
	return r.idNew && equalFoldASCII(name, r.idName)
}

// appendIDField appends r's id field when the proxy made the id, unless
// a rule's edits remove the field: they run after, as on the forwarding
// headers, and may set one of their own.
func (r *Request) appendIDField(b []byte) []byte {
	if !r.idNew || len(r.reqEdits) > 0 && editsDrop(r.reqEdits, r.idName) {
		return b
	}
	return appendFieldLine(b, r.idName, r.id)
}

// relayedIDLine is the id's field line that the endpoint's final response
// gets in place of its own fields of that name (Config.RequestIDInResponse);
// nil when the id goes in no response, or when the rule's response edits
// set or remove the field: as on the request, they have the last word.
func (r *Request) relayedIDLine() []byte {
	if len(r.idLine) == 0 || len(r.respEdits) > 0 && editsDrop(r.respEdits, r.idName) {
		return nil
	}
	return r.idLine
}

// responseID readies resp, the endpoint's final response, for r's id: it
// returns relayedIDLine, and when that is not nil marks the endpoint's own
// fields of that name dropped.
func (r *Request) responseID(resp *response) []byte {
	line := r.relayedIDLine()
	if line == nil {
		return nil
	}
	for i := 0; i < resp.nf; i++ {
		if f := &resp.fields[i]; equalFoldASCII(f.name.of(resp.head), r.idName) {
			f.drop = true
		}
	}
	return line
}

// ResponseID returns the field the client gets r's id in and the id, when
// the listener sends ids in responses (Config.RequestIDInResponse) and r
// was given one; "" and nil otherwise. The id must not be modified.
func (r *Request) ResponseID() (name string, id []byte) {
	if len(r.idLine) == 0 {
		return "", nil
	}
	return r.idName, r.idLine[len(r.idName)+2 : len(r.idLine)-2]
}

// editsDrop reports whether edits remove (or set) the field name.
func editsDrop(edits []*HeaderEdits, name string) bool {
	for _, e := range edits {
		for _, d := range e.drop {
			if strings.EqualFold(d, name) {
				return true
			}
		}
	}
	return false
}
