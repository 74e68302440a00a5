package httpproxy

import (
	"errors"
	"strconv"
)

// errBadChunk is returned by chunkDecoder for framing it refuses; the caller
// answers 400 (request body) or 502 (response body).
var errBadChunk = errors.New("httpproxy: invalid chunked encoding")

// maxChunkLine bounds a chunk-size line (with extensions) and a trailer
// field line; the output buffer is larger, so a line always fits in it.
const maxChunkLine = 4 << 10

// Decoder states.
const (
	chSize    uint8 = iota // expecting a chunk-size line
	chData                 // inside chunk data
	chDataEnd              // expecting the CRLF after chunk data
	chTrailer              // expecting a trailer field line or the final CRLF
	chDone
)

// chunkDecoder decodes a chunked body (RFC 9112 §7.1) incrementally and
// re-frames it. The proxy never forwards the sender's framing bytes: with
// rechunk it emits canonical chunks (hex size, CRLF, data, CRLF; extensions
// dropped; trailer fields other than framing and hop-by-hop ones kept), else
// only the data. Whatever the next hop's parser tolerates, it sees framing
// the proxy chose, so a smuggling payload hidden in odd chunk syntax cannot
// desynchronise it. The syntax accepted is strict: CRLF line ends only, no
// whitespace after the size unless a ';' extension follows, no control
// characters.
type chunkDecoder struct {
	state     uint8
	remaining int64 // data bytes left in the current chunk
	data      int64 // data bytes decoded so far (Config.MaxRequestBodyBytes)
	trailer   int   // trailer bytes seen, bounded by maxHead
}

func (d *chunkDecoder) reset() { *d = chunkDecoder{} }

func (d *chunkDecoder) done() bool { return d.state == chDone }

// decode consumes what it can of in and appends the output to out, never
// beyond cap(out) (it does not allocate). It returns the bytes of in
// consumed and the extended out. It stops when in holds no complete next
// step (the caller reads more and calls again with the unconsumed rest
// first), when out is full (the caller flushes), or at the end of the body.
func (d *chunkDecoder) decode(in, out []byte, rechunk bool) (int, []byte, error) {
	i := 0
	for d.state != chDone {
		switch d.state {
		case chSize:
			j := indexByte(in[i:], '\n')
			if j < 0 {
				if len(in)-i > maxChunkLine {
					return i, out, errBadChunk
				}
				return i, out, nil
			}
			if j > maxChunkLine {
				return i, out, errBadChunk
			}
			size, ok := parseChunkSize(in[i : i+j])
			if !ok {
				return i, out, errBadChunk
			}
			if rechunk {
				if cap(out)-len(out) < 20 {
					return i, out, nil
				}
				out = strconv.AppendUint(out, uint64(size), 16)
				out = append(out, '\r', '\n')
			}
			i += j + 1
			if size == 0 {
				d.state = chTrailer
			} else {
				d.state = chData
				d.remaining = size
			}
		case chData:
			n := len(in) - i
			if int64(n) > d.remaining {
				n = int(d.remaining)
			}
			if room := cap(out) - len(out); n > room {
				n = room
			}
			if n == 0 {
				return i, out, nil
			}
			out = append(out, in[i:i+n]...)
			i += n
			d.remaining -= int64(n)
			d.data += int64(n)
			if d.remaining == 0 {
				d.state = chDataEnd
			}
		case chDataEnd:
			if len(in)-i < 2 {
				if len(in) > i && in[i] != '\r' {
					return i, out, errBadChunk
				}
				return i, out, nil
			}
			if in[i] != '\r' || in[i+1] != '\n' {
				return i, out, errBadChunk
			}
			if rechunk {
				if cap(out)-len(out) < 2 {
					return i, out, nil
				}
				out = append(out, '\r', '\n')
			}
			i += 2
			d.state = chSize
		case chTrailer:
			j := indexByte(in[i:], '\n')
			if j < 0 {
				if len(in)-i > maxChunkLine {
					return i, out, errBadChunk
				}
				return i, out, nil
			}
			if j > maxChunkLine || j == 0 || in[i+j-1] != '\r' {
				return i, out, errBadChunk
			}
			line := in[i : i+j+1] // with CRLF
			if j == 1 {
				if rechunk {
					if cap(out)-len(out) < 2 {
						return i, out, nil
					}
					out = append(out, '\r', '\n')
				}
				i += 2
				d.state = chDone
				break
			}
			forward, ok := trailerField(line[:j-1])
			if !ok {
				return i, out, errBadChunk
			}
			d.trailer += len(line)
			if d.trailer > maxHead {
				return i, out, errBadChunk
			}
			if rechunk && forward {
				if cap(out)-len(out) < len(line) {
					return i, out, nil
				}
				out = append(out, line...)
			}
			i += len(line)
		}
	}
	return i, out, nil
}

// parseChunkSize parses a chunk-size line without its LF: hex size,
// optional extensions, CR.
func parseChunkSize(line []byte) (int64, bool) {
	if len(line) == 0 || line[len(line)-1] != '\r' {
		return 0, false
	}
	line = line[:len(line)-1]
	var size int64
	k := 0
	for ; k < len(line); k++ {
		c := line[k]
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			goto ext
		}
		if k == 16 || size > (1<<60)>>4 {
			// At most 16 hex digits, leading zeros included (as net/http),
			// and at most 2^60 bytes.
			return 0, false
		}
		size = size<<4 | int64(v)
	}
ext:
	if k == 0 {
		return 0, false
	}
	rest := line[k:]
	if len(rest) == 0 {
		return size, true
	}
	// chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) == 0 || rest[0] != ';' {
		return 0, false
	}
	if !isValue(rest) {
		return 0, false
	}
	return size, true
}

// trailerField validates one trailer field line (without CRLF) and says
// whether it is forwarded: framing, Host and hop-by-hop fields are not.
func trailerField(line []byte) (forward, ok bool) {
	k := 0
	for k < len(line) && isToken[line[k]] {
		k++
	}
	if k == 0 || k >= len(line) || line[k] != ':' {
		return false, false
	}
	if !isValue(line[k+1:]) {
		return false, false
	}
	return classify(line[:k]) == fieldOther, true
}
