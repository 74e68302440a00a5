// Package tlsinspect reads what a TLS client asks for in its ClientHello
// (the server name, SNI) without taking part in the handshake, for TLS
// passthrough: a TCP listener routes on the name and forwards every byte,
// the ClientHello included, to the endpoint that terminates TLS (HAProxy's
// "tcp-request inspect-delay" with "req.ssl_sni").
//
// Parse works on the bytes read so far, so a caller reads, parses, and
// reads again while Parse asks for more. A ClientHello may come in several
// TCP reads and span several TLS records; Parse joins the records'
// fragments in a scratch buffer the caller gives it, and allocates
// nothing.
package tlsinspect

// MaxRecord is the largest payload of a TLS plaintext record (RFC 8446,
// 5.1). A ClientHello of one full record takes MaxRecord+5 bytes.
const MaxRecord = 1 << 14

const (
	recordHeaderLen  = 5
	recordHandshake  = 22 // ContentType handshake
	typeClientHello  = 1  // HandshakeType client_hello
	extServerName    = 0  // ExtensionType server_name
	nameTypeHostName = 0  // NameType host_name
)

// Hello is what the first bytes of a connection say.
type Hello struct {
	// TLS is whether they are (the start of) a TLS ClientHello.
	TLS bool
	// SNI is the host name of the server_name extension, empty without
	// one. It points into the data or the scratch given to Parse.
	SNI []byte
}

// Parse inspects data, the first bytes a client sent. more reports that
// data is the start of what may be a ClientHello and more bytes are needed
// to conclude; h is then what can be said so far (TLS while nothing
// contradicts it, no SNI), to be taken as the answer when no more bytes
// will come. Without more, h is final: TLS false when data does not begin
// with a TLS handshake record holding a ClientHello; TLS true and SNI set
// when the ClientHello names a server. A ClientHello that turns out to be
// malformed in its body is TLS with no SNI: the endpoint will judge it.
//
// scratch is where fragments of a ClientHello spread over several records
// are joined; it needs room for len(data) bytes, else Parse sees only the
// fragments that fit and may ask for more that will not help.
func Parse(data, scratch []byte) (h Hello, more bool) {
	if len(data) == 0 {
		return Hello{TLS: false}, true
	}
	if !recordStart(data) {
		return Hello{}, false
	}
	if len(data) < recordHeaderLen {
		return Hello{TLS: true}, true
	}
	msg, ok := handshake(data, scratch)
	if !ok {
		return Hello{}, false
	}
	if len(msg) >= 1 && msg[0] != typeClientHello {
		return Hello{}, false
	}
	n, ok := whole(msg)
	if !ok {
		return Hello{TLS: true}, true
	}
	return Hello{TLS: true, SNI: serverName(msg[4 : 4+n])}, false
}

// recordStart reports whether data can begin a TLS handshake record: its
// content type, and a major version of 3 (SSL 3.0 to TLS 1.3 all say 3).
func recordStart(data []byte) bool {
	return data[0] == recordHandshake && (len(data) < 2 || data[1] == 3)
}

// handshake returns the handshake bytes carried by the records of data, as
// far as they go or up to the end of the first message; ok is false when a
// record header before that end is not that of a handshake record. What
// follows the message (a client sending early data follows it with
// change_cipher_spec and application data records) is not looked at. The
// first record's payload is used in place when it alone holds the whole
// message, the usual case; otherwise the fragments are copied into scratch.
func handshake(data, scratch []byte) (msg []byte, ok bool) {
	payload, rest, ok := record(data)
	if !ok {
		return nil, false
	}
	if _, ok := whole(payload); ok {
		return payload, true
	}
	if len(rest) == 0 {
		return payload, true // the rest of this record has not come yet
	}
	k := copy(scratch, payload)
	for len(rest) > 0 && k < len(scratch) {
		if _, ok := whole(scratch[:k]); ok {
			break
		}
		if len(rest) < recordHeaderLen {
			if !recordStart(rest) {
				return nil, false
			}
			break
		}
		if payload, rest, ok = record(rest); !ok {
			// A record of another type before the ClientHello ended.
			return nil, false
		}
		k += copy(scratch[k:], payload)
	}
	return scratch[:k], true
}

// whole returns the body length of the handshake message msg begins with,
// and whether msg holds all of it.
func whole(msg []byte) (n int, ok bool) {
	if len(msg) < 4 {
		return 0, false
	}
	n = int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	return n, len(msg)-4 >= n
}

// record splits off the first record of data, which holds at least its
// header: its payload (as much as data holds) and what follows it.
func record(data []byte) (payload, rest []byte, ok bool) {
	if data[0] != recordHandshake || data[1] != 3 {
		return nil, nil, false
	}
	n := int(data[3])<<8 | int(data[4])
	if n == 0 || n > MaxRecord {
		return nil, nil, false
	}
	data = data[recordHeaderLen:]
	if len(data) <= n {
		return data, nil, true
	}
	return data[:n], data[n:], true
}

// serverName returns the host name of the server_name extension of a
// ClientHello body (RFC 8446, 4.1.2; RFC 6066, 3), or nil. A name that
// crypto/tls would refuse (empty, or with a final dot) counts as none.
func serverName(b []byte) []byte {
	r := reader(b)
	if !r.skip(2+32) || !r.skipVec(1) || !r.skipVec(2) || !r.skipVec(1) {
		return nil
	}
	if len(r) == 0 {
		return nil // no extensions (an SSL 3.0 style hello)
	}
	exts, ok := r.vec(2)
	if !ok {
		return nil
	}
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec(2)
		if !ok1 || !ok2 {
			return nil
		}
		if typ != extServerName {
			continue
		}
		list, ok := data.vec(2)
		if !ok {
			return nil
		}
		for len(list) > 0 {
			nameType, ok1 := list.u8()
			name, ok2 := list.vec(2)
			if !ok1 || !ok2 {
				return nil
			}
			if nameType == nameTypeHostName {
				if len(name) == 0 || name[len(name)-1] == '.' {
					return nil
				}
				return name
			}
		}
		return nil
	}
	return nil
}

// reader consumes a byte string from the front.
type reader []byte

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) u8() (byte, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := (*r)[0]
	*r = (*r)[1:]
	return v, true
}

func (r *reader) u16() (int, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := int((*r)[0])<<8 | int((*r)[1])
	*r = (*r)[2:]
	return v, true
}

// vec consumes a vector whose length takes lenBytes (1 or 2) bytes.
func (r *reader) vec(lenBytes int) (reader, bool) {
	var n int
	var ok bool
	if lenBytes == 1 {
		var b byte
		b, ok = r.u8()
		n = int(b)
	} else {
		n, ok = r.u16()
	}
	if !ok || len(*r) < n {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, true
}

func (r *reader) skipVec(lenBytes int) bool {
	_, ok := r.vec(lenBytes)
	return ok
}
