package storage

import "encoding/binary"

// Key builds a key from parts separated by '/'. Parts must not contain '/'
// unless they are the last part; IDs are validated to exclude it.
func Key(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	k := make([]byte, 0, n+8)
	for i, p := range parts {
		if i > 0 {
			k = append(k, '/')
		}
		k = append(k, p...)
	}
	return k
}

// AppendUint64 appends '/' and v in big-endian, so keys sort by v.
func AppendUint64(k []byte, v uint64) []byte {
	k = append(k, '/')
	return binary.BigEndian.AppendUint64(k, v)
}

// AppendUint32 appends '/' and v in big-endian.
func AppendUint32(k []byte, v uint32) []byte {
	k = append(k, '/')
	return binary.BigEndian.AppendUint32(k, v)
}

// Uint64Suffix decodes the big-endian uint64 that ends k.
func Uint64Suffix(k []byte) uint64 {
	if len(k) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(k)-8:])
}

// Uint32Suffix decodes the big-endian uint32 that ends k.
func Uint32Suffix(k []byte) uint32 {
	if len(k) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(k[len(k)-4:])
}

// PrefixEnd returns the smallest key greater than every key with prefix p,
// the exclusive end of a prefix scan (nil if p is all 0xff).
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
