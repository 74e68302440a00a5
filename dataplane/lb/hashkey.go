package lb

// FNV-1a 64 parameters (http://www.isthe.com/chongo/tech/comp/fnv/).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// HashKey returns the 64-bit hash of a request's hash key (a source
// address, URI, header, cookie or URL parameter value) for Request.Hash. It
// is FNV-1a 64 followed by the MurmurHash3 finalizer, so every input bit
// reaches every output bit (FNV alone leaves the high bits of short keys
// poorly mixed, and the ring and Maglev tables use the high bits). It is
// not cryptographic: a client choosing keys can aim at one endpoint, which
// bounded load (NewHash's balanceFactor) limits. It does not allocate.
func HashKey(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return mix64(h)
}

// HashString is HashKey for a string, with identical results.
func HashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return mix64(h)
}

// mix64 is the MurmurHash3 64-bit finalizer (fmix64): a bijection with full
// avalanche.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
