package receipts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
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

// decodeReadSet parses an r/m value. It never panics, whatever b holds.
func decodeReadSet(b []byte) (rb *roaring.Bitmap, err error) {
	if len(b) == 0 {
		return nil, errBadReadSet
	}
	switch b[0] {
	case tagRoaring:
		defer func() {
			if r := recover(); r != nil {
				rb, err = nil, fmt.Errorf("%w: %v", errBadReadSet, r)
			}
		}()
		rb = roaring.New()
		n, err := rb.ReadFrom(bytes.NewReader(b[1:]))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadReadSet, err)
		}
		if int(n) != len(b)-1 {
			return nil, fmt.Errorf("%w: %d trailing bytes", errBadReadSet, len(b)-1-int(n))
		}
		if err := rb.Validate(); err != nil {
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
