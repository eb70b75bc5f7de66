package receipts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sort"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/readmark/readmark/internal/storage"
)

// Read-set encodings (first byte of an r/m value).
const (
	// tagRoaring: the roaring portable serialization, after RunOptimize.
	tagRoaring byte = 1
	// tagBitset: a plain bitset over [0, Watermark): bit i is byte i/8, bit
	// i%8 (least significant first); ceil(W/8) bytes.
	tagBitset byte = 2
)

var errBadReadSet = errors.New("receipts: malformed read set")

// encodeReadSet serializes rb in whichever encoding is smaller. It calls
// RunOptimize on rb (which changes its containers, not its contents), so the
// caller must hold the state's write lock.
func encodeReadSet(rb *roaring.Bitmap, watermark uint32) []byte {
	rb.RunOptimize()
	rsz := rb.GetSerializedSizeInBytes()
	bsz := (uint64(watermark) + 7) / 8
	if rb.IsEmpty() || rb.Maximum() >= watermark || rsz <= bsz {
		out := make([]byte, 1, 1+rsz)
		out[0] = tagRoaring
		b, err := rb.ToBytes()
		if err != nil { // cannot happen: writes to memory
			panic(err)
		}
		return append(out, b...)
	}
	out := make([]byte, 1+bsz)
	out[0] = tagBitset
	dst := out[1:]
	for i, w := range rb.ToDense() {
		var tmp [8]byte
		binary.LittleEndian.PutUint64(tmp[:], w)
		copy(dst[min(8*i, len(dst)):], tmp[:])
	}
	return out
}

// decodeReadSet parses an r/m value, to be changed and written back (the
// state cache). It never panics, whatever b holds, and accepts exactly what
// roaring's own Validate accepts; but it checks in one linear pass over the
// bytes, where Validate compares every pair of runs of a container: 31 ms
// for a 2,500-run set, paid by each load on a busy group. The value comes
// from our own store, whose blocks are checksummed, so what a check can
// still catch is a bug in an encoder (ours, or an older version's); it is
// kept here because a malformed set would otherwise be counted, changed
// and written back.
func decodeReadSet(b []byte) (rb *roaring.Bitmap, err error) {
	if len(b) == 0 {
		return nil, errBadReadSet
	}
	switch b[0] {
	case tagRoaring:
		n, err := walkRoaring(b[1:], true, nil)
		if err != nil {
			return nil, err
		}
		if n != len(b)-1 {
			return nil, fmt.Errorf("%w: %d trailing bytes", errBadReadSet, len(b)-1-n)
		}
		defer func() {
			if r := recover(); r != nil {
				rb, err = nil, fmt.Errorf("%w: %v", errBadReadSet, r)
			}
		}()
		rb = roaring.New()
		if _, err := rb.ReadFrom(bytes.NewReader(b[1:])); err != nil {
			return nil, fmt.Errorf("%w: %v", errBadReadSet, err)
		}
		return rb, nil
	case tagBitset:
		src := b[1:]
		words := make([]uint64, (len(src)+7)/8)
		for i := range words {
			var tmp [8]byte
			copy(tmp[:], src[8*i:])
			words[i] = binary.LittleEndian.Uint64(tmp[:])
		}
		return roaring.FromDense(words, false), nil
	default:
		return nil, fmt.Errorf("%w: tag %d", errBadReadSet, b[0])
	}
}

// readSetContains reports whether the r/m value b holds ord, reading the
// encoded bytes in place: no set is built, and a roaring value is walked
// only as far as ord's container, searched in O(log n). Sync asks this of
// every message it returns. It does not validate (a read-only answer: a
// malformed value can make it wrong, not panic or spread), so that
// answering stays cheaper than decoding.
func readSetContains(b []byte, ord uint32) (bool, error) {
	if len(b) == 0 {
		return false, errBadReadSet
	}
	switch b[0] {
	case tagRoaring:
		found := false
		_, err := walkRoaring(b[1:], false, func(key uint16, kind containerKind, data []byte) bool {
			if key < uint16(ord>>16) {
				return true
			}
			found = key == uint16(ord>>16) && kind.contains(data, uint16(ord))
			return false
		})
		return found, err
	case tagBitset:
		i := ord / 8
		return uint64(i) < uint64(len(b)-1) && b[1+i]&(1<<(ord%8)) != 0, nil
	default:
		return false, fmt.Errorf("%w: tag %d", errBadReadSet, b[0])
	}
}

// The roaring portable format (github.com/RoaringBitmap/RoaringFormatSpec),
// as roaring's ReadFrom reads it.
const (
	roaringCookieRuns   = 12347 // low 16 bits; the high ones are the container count - 1
	roaringCookieNoRuns = 12346 // then a uint32 container count
	roaringNoOffsets    = 4     // with runs, fewer containers than this have no offset header
	roaringArrayMax     = 4096  // larger containers without runs are bitmaps
)

type containerKind byte

const (
	arrayContainer  containerKind = iota // card ascending uint16s
	bitmapContainer                      // 65,536 bits, least significant first
	runContainer                         // (start, length-1) uint16 pairs
)

// walkRoaring reads a roaring portable serialization, calling visit (if
// not nil) with each container in key order until it returns false, and
// returns the length of what it read (the whole serialization unless
// stopped). It never reads out of b.
// With check, it rejects what roaring's Validate rejects (keys not
// ascending; array values not ascending; a bitmap's cardinality not its
// population; runs empty, past 65,535, or not ascending with gaps), each
// check linear.
func walkRoaring(b []byte, check bool, visit func(key uint16, kind containerKind, data []byte) bool) (int, error) {
	bad := func(what string) (int, error) { return 0, fmt.Errorf("%w: %s", errBadReadSet, what) }
	if len(b) < 4 {
		return bad("no cookie")
	}
	cookie := binary.LittleEndian.Uint32(b)
	p := 4
	var size int
	var runFlags []byte
	switch {
	case cookie&0xffff == roaringCookieRuns:
		size = int(cookie>>16) + 1
		if len(b) < p+(size+7)/8 {
			return bad("short run flags")
		}
		runFlags = b[p : p+(size+7)/8]
		p += len(runFlags)
	case cookie == roaringCookieNoRuns:
		if len(b) < 8 {
			return bad("no container count")
		}
		n := binary.LittleEndian.Uint32(b[4:])
		if n > 1<<16 {
			return bad("over 65,536 containers")
		}
		size, p = int(n), 8
	default:
		return bad("unknown cookie")
	}
	if len(b)-p < 4*size {
		return bad("short header")
	}
	header := b[p : p+4*size]
	p += 4 * size
	if runFlags == nil || size >= roaringNoOffsets {
		if len(b)-p < 4*size {
			return bad("short offsets")
		}
		p += 4 * size
	}
	for i := range size {
		key := binary.LittleEndian.Uint16(header[4*i:])
		card := int(binary.LittleEndian.Uint16(header[4*i+2:])) + 1
		if check && i > 0 && key <= binary.LittleEndian.Uint16(header[4*i-4:]) {
			return bad("keys not ascending")
		}
		kind, n := arrayContainer, 2*card
		switch {
		case runFlags != nil && runFlags[i/8]&(1<<(i%8)) != 0:
			if len(b)-p < 2 {
				return bad("short run count")
			}
			kind, n = runContainer, 4*int(binary.LittleEndian.Uint16(b[p:]))
			p += 2
		case card > roaringArrayMax:
			kind, n = bitmapContainer, 1<<16/8
		}
		if len(b)-p < n {
			return bad("short container")
		}
		data := b[p : p+n]
		p += n
		if check {
			if err := kind.check(data, card); err != nil {
				return 0, err
			}
		}
		if visit != nil && !visit(key, kind, data) {
			break
		}
	}
	return p, nil
}

// check validates a container's data; card is the header's cardinality.
func (k containerKind) check(data []byte, card int) error {
	switch k {
	case arrayContainer:
		for i := 2; i < len(data); i += 2 {
			if binary.LittleEndian.Uint16(data[i:]) <= binary.LittleEndian.Uint16(data[i-2:]) {
				return fmt.Errorf("%w: array not ascending", errBadReadSet)
			}
		}
	case bitmapContainer:
		n := 0
		for i := 0; i < len(data); i += 8 {
			n += bits.OnesCount64(binary.LittleEndian.Uint64(data[i:]))
		}
		if n != card {
			return fmt.Errorf("%w: bitmap of %d values, header says %d", errBadReadSet, n, card)
		}
	case runContainer:
		if len(data) == 0 {
			return fmt.Errorf("%w: empty run container", errBadReadSet)
		}
		next := 0 // the least start the next run may have
		for i := 0; i < len(data); i += 4 {
			start := int(binary.LittleEndian.Uint16(data[i:]))
			last := start + int(binary.LittleEndian.Uint16(data[i+2:]))
			if start < next || last > 0xffff {
				return fmt.Errorf("%w: runs overlapping, touching or out of range", errBadReadSet)
			}
			next = last + 2
		}
	}
	return nil
}

// contains reports whether a container's data holds v (binary searches on
// unvalidated data may answer wrong, never read out of it).
func (k containerKind) contains(data []byte, v uint16) bool {
	at := func(i int) uint16 { return binary.LittleEndian.Uint16(data[2*i:]) }
	switch k {
	case arrayContainer:
		n := len(data) / 2
		i := sort.Search(n, func(i int) bool { return at(i) >= v })
		return i < n && at(i) == v
	case bitmapContainer:
		return data[v/8]&(1<<(v%8)) != 0
	default: // runs: the last run starting at or before v
		n := len(data) / 4
		i := sort.Search(n, func(i int) bool { return at(2*i) > v }) - 1
		return i >= 0 && int(v) <= int(at(2*i))+int(at(2*i+1))
	}
}

// Keys.

func readSetKey(conv string, seq uint64) []byte {
	return storage.AppendUint64(storage.Key("r", "m", conv), seq)
}

func c2cReadKey(conv string, seq uint64) []byte {
	return storage.AppendUint64(storage.Key("r", "c", conv), seq)
}

// stateKey is where m's read state is stored: its read set (group
// messages) or its receiver's receipt (C2C).
func stateKey(m Msg) []byte {
	if m.GroupID != "" {
		return readSetKey(m.Conv, m.Seq)
	}
	return c2cReadKey(m.Conv, m.Seq)
}

func markKey(reader, peer string) []byte { return storage.Key("r", "k", reader, peer) }

// logMemberKey is r/t/<group>/<ord>; entries are logMemberKey + '/' + first seq.
func logMemberKey(group string, ord uint32) []byte {
	return storage.AppendUint32(storage.Key("r", "t", group), ord)
}

func logKey(group string, ord uint32, first uint64) []byte {
	k := make([]byte, 0, len("r/t/")+len(group)+5+9)
	k = append(append(k, "r/t/"...), group...)
	return storage.AppendUint64(storage.AppendUint32(k, ord), first)
}

// encodeLog builds a receipt-log value: uvarint time ms, then uvarint deltas
// of seqs[1:] (seqs ascending; seqs[0] is in the key).
func encodeLog(timeMs int64, seqs []uint64) []byte {
	out := make([]byte, 0, binary.MaxVarintLen64+2*len(seqs))
	out = binary.AppendUvarint(out, uint64(timeMs))
	for i := 1; i < len(seqs); i++ {
		out = binary.AppendUvarint(out, seqs[i]-seqs[i-1])
	}
	return out
}

// logContains reports the time of a log entry whose first seq is first, and
// whether it lists seq.
func logContains(first uint64, v []byte, seq uint64) (int64, bool) {
	t, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, false
	}
	v = v[n:]
	cur := first
	for {
		if cur == seq {
			return int64(t), true
		}
		if cur > seq || len(v) == 0 {
			return 0, false
		}
		d, n := binary.Uvarint(v)
		if n <= 0 || d == 0 {
			return 0, false
		}
		v = v[n:]
		cur += d
	}
}

func sortSeqs(s []uint64) { sort.Slice(s, func(i, j int) bool { return s[i] < s[j] }) }
