package receipts

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/readmark/readmark/internal/storage"
)

// readSet100k builds read sets over a 100,000-member message.
func readSet100k(state string) *roaring.Bitmap {
	const w = 100_000
	rb := roaring.New()
	switch state {
	case "all":
		rb.AddRange(1, w) // everyone but the sender (ordinal 0)
	case "half":
		r := rand.New(rand.NewPCG(1, 2))
		for i := uint32(1); i < w; i++ {
			if r.IntN(2) == 0 {
				rb.Add(i)
			}
		}
	case "one":
		rb.Add(77_777)
	}
	return rb
}

func TestReadSetSizes(t *testing.T) {
	const w = 100_000
	tests := []struct {
		state string
		max   int
	}{
		{"none", 100},
		{"all", 100},
		{"one", 100},
		{"half", w * 11 / 80}, // 1.1 bits per member
	}
	for _, tc := range tests {
		t.Run(tc.state, func(t *testing.T) {
			rb := readSet100k(tc.state)
			enc := encodeReadSet(rb.Clone(), w)
			t.Logf("%s: %d bytes (%.3f bits/member), roaring alone %d", tc.state, len(enc),
				float64(8*len(enc))/w, rb.GetSerializedSizeInBytes())
			if len(enc) > tc.max {
				t.Fatalf("%d bytes, want <= %d", len(enc), tc.max)
			}
			got, err := decodeReadSet(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equals(rb) {
				t.Fatal("round trip changed the set")
			}
		})
	}
}

func TestReadSetRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		w := uint32(r.IntN(5000)) + 1
		rb := roaring.New()
		density := r.Float64()
		for i := uint32(0); i < w; i++ {
			if r.Float64() < density {
				rb.Add(i)
			}
		}
		enc := encodeReadSet(rb.Clone(), w)
		if max := 1 + int(w+7)/8; len(enc) > max && len(enc) > 100 {
			t.Fatalf("w=%d: %d bytes > bitset %d", w, len(enc), max)
		}
		got, err := decodeReadSet(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equals(rb) {
			t.Fatalf("w=%d density %.2f: round trip changed the set", w, density)
		}
	}
}

func TestReceiptLogValue(t *testing.T) {
	seqs := []uint64{5, 6, 9, 300, 1 << 40}
	v := encodeLog(123456, seqs)
	for _, s := range seqs {
		if tm, ok := logContains(seqs[0], v, s); !ok || tm != 123456 {
			t.Fatalf("seq %d: %d %v", s, tm, ok)
		}
	}
	for _, s := range []uint64{4, 7, 299, 301, 1<<40 + 1} {
		if _, ok := logContains(seqs[0], v, s); ok {
			t.Fatalf("seq %d found", s)
		}
	}
}

// roaringDecode is what decodeReadSet must agree with: roaring's own
// reader and Validate.
func roaringDecode(b []byte) (rb *roaring.Bitmap, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	rb = roaring.New()
	n, err := rb.ReadFrom(bytes.NewReader(b))
	return rb, err == nil && int(n) == len(b) && rb.Validate() == nil
}

// FuzzDecodeReadSet: the decoder and readSetContains must not panic on any
// input; the decoder must accept a roaring value exactly when roaring's
// Validate does, and what it accepts must survive a re-encode and be
// answered alike by readSetContains.
func FuzzDecodeReadSet(f *testing.F) {
	for _, s := range []string{"none", "all", "one", "half"} {
		f.Add(encodeReadSet(readSet100k(s), 100_000))
	}
	f.Add(encodeReadSet(runs2500(), 100_000))
	f.Add(encodeReadSet(roaring.BitmapOf(1, 2, 3, 1000), 2000))
	f.Add(encodeReadSet(roaring.BitmapOf(1, 2, 3, 1000, 70_000, 200_000), 2000))
	f.Add([]byte{})
	f.Add([]byte{tagRoaring})
	f.Add([]byte{tagBitset, 0xff, 0x01})
	f.Add([]byte{tagRoaring, 0x3b, 0x30, 0, 0, 0xff, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 { // keeps executions fast; sizes beyond add no new paths
			return
		}
		for _, ord := range []uint32{0, 1, 77, 1 << 16, 70_000, 1<<32 - 1} {
			readSetContains(b, ord)
		}
		rb, err := decodeReadSet(b)
		if len(b) > 0 && b[0] == tagRoaring {
			if _, ok := roaringDecode(b[1:]); ok != (err == nil) {
				t.Fatalf("accepted=%v, roaring's Validate accepts=%v (%v)", err == nil, ok, err)
			}
		}
		if err != nil {
			return
		}
		checkContains(t, b, rb)
		if rb.IsEmpty() {
			return
		}
		max := rb.Maximum()
		if max > 1<<20 {
			return // too big to re-encode as a bitset cheaply; decoding is what is tested
		}
		got, err := decodeReadSet(encodeReadSet(rb.Clone(), max+1))
		if err != nil {
			t.Fatalf("re-encoded set does not decode: %v", err)
		}
		if !got.Equals(rb) {
			t.Fatal("re-encode changed the set")
		}
	})
}

// checkContains compares readSetContains on enc with rb, the set it
// encodes, on up to 1,000 members and each one's neighbours.
func checkContains(t *testing.T, enc []byte, rb *roaring.Bitmap) {
	t.Helper()
	probes := []uint32{0, 1 << 16, 1<<32 - 1}
	it := rb.Iterator()
	for i := 0; i < 1000 && it.HasNext(); i++ {
		v := it.Next()
		probes = append(probes, v-1, v, v+1)
	}
	for _, v := range probes {
		got, err := readSetContains(enc, v)
		if err != nil || got != rb.Contains(v) {
			t.Fatalf("contains(%d) = %v, %v; the set says %v", v, got, err, rb.Contains(v))
		}
	}
}

// TestReadSetContains: readSetContains answers from the encoded bytes as
// the decoded set does, for every container kind and both encodings.
func TestReadSetContains(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	sets := map[string]*roaring.Bitmap{"runs": runs2500(), "empty": roaring.New()}
	for _, s := range []string{"all", "half", "one"} {
		sets[s] = readSet100k(s)
	}
	sparse := roaring.New() // array containers in several keys
	for range 3000 {
		sparse.Add(r.Uint32N(300_000))
	}
	sets["sparse"] = sparse
	for name, rb := range sets {
		for _, w := range []uint32{100_000, 300_001} { // bitset, then roaring, where smaller
			enc := encodeReadSet(rb.Clone(), w)
			t.Run(fmt.Sprintf("%s-w%d-tag%d", name, w, enc[0]), func(t *testing.T) {
				checkContains(t, enc, rb)
			})
		}
	}
}

// TestReadSetRunChecks: the linear check of run containers rejects what
// roaring's pairwise Validate rejects, and nothing else.
func TestReadSetRunChecks(t *testing.T) {
	// One run container of key 0: cookie, run flags, header (key, card-1),
	// run count, runs as (start, length-1).
	value := func(runs ...uint16) []byte {
		b := binary.LittleEndian.AppendUint32([]byte{tagRoaring}, roaringCookieRuns)
		b = append(b, 1, 0, 0, 0, 0)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(runs)/2))
		for _, v := range runs {
			b = binary.LittleEndian.AppendUint16(b, v)
		}
		return b
	}
	tests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"apart", value(0, 1, 3, 0, 10, 5), true},
		{"last value", value(65_535, 0), true},
		{"touching", value(0, 1, 2, 0), false},
		{"overlapping", value(0, 1, 1, 0), false},
		{"equal", value(4, 1, 4, 1), false},
		{"descending", value(5, 0, 0, 0), false},
		{"past 65,535", value(65_535, 1), false},
		{"no runs", value(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeReadSet(tt.b)
			if _, ok := roaringDecode(tt.b[1:]); ok != tt.ok || (err == nil) != tt.ok {
				t.Fatalf("roaring accepts=%v, decodeReadSet error %v; want accepted=%v", ok, err, tt.ok)
			}
		})
	}
}

// runs2500 is the read set of a 100,000-member message read in 2,500
// stretches of 20 members (each 40 ordinals apart): the worst case of
// roaring's run-container validation, quadratic in the runs.
func runs2500() *roaring.Bitmap {
	rb := roaring.New()
	for i := range uint64(2500) {
		rb.AddRange(40*i, 40*i+20)
	}
	return rb
}

// BenchmarkReadSet measures, on the encoded runs2500 set: decode, loading
// the set for writing (the state cache, validated); contains, answering
// "did ordinal 50,005 read it" as sync does from storage.
func BenchmarkReadSet(b *testing.B) {
	enc := encodeReadSet(runs2500(), 100_000)
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeReadSet(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("contains", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := readSetContains(enc, 50_005); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
}

func TestLogKeyLayout(t *testing.T) {
	if got, want := string(logKey("grp", 7, 9)), string(storage.AppendUint64(logMemberKey("grp", 7), 9)); got != want {
		t.Fatalf("logKey %q, want %q", got, want)
	}
}
