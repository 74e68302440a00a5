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
// one to keep; else a new UUID, which replaces what the client sent. A
// request picked again keeps the id it was given. Parsing a request head
// forgets the id of the one before.
func (r *Request) setRequestID(cfg *Config) {
	if cfg == nil || cfg.RequestID == "" || r.id != nil && r.idName == cfg.RequestID {
		return // no ids (parsing left none), or the one a first pick gave
	}
	r.idName, r.id, r.idNew = cfg.RequestID, nil, false
	if r.fwd.trusted {
		for i := 0; i < r.nf; i++ {
			f := &r.fields[i]
			if f.drop || !equalFoldASCII(f.name.of(r.head), r.idName) {
				continue
			}
			if v := f.value.of(r.head); len(v) > 0 && len(v) <= maxRequestID && visible(v) {
				r.id = v
				return
			}
			break // only the first field counts, as for the client
		}
	}
	newRequestID(&r.idBuf)
	r.id, r.idNew = r.idBuf[:], true
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
	if !r.idNew || len(r.reqEdits) > 0 && r.editsDropID() {
		return b
	}
	b = append(b, r.idName...)
	b = append(b, ": "...)
	b = append(b, r.id...)
	return append(b, '\r', '\n')
}

// editsDropID reports whether the request's edits remove its id field.
func (r *Request) editsDropID() bool {
	for _, e := range r.reqEdits {
		for _, d := range e.drop {
			if strings.EqualFold(d, r.idName) {
				return true
			}
		}
	}
	return false
}
