package gateway

import (
	"context"
	"slices"
	"testing"
	"time"
)

func testSession(maxQueue int) *session {
	s := newSession(context.Background(), New(Config{MaxQueueBytes: maxQueue, MaxInFlight: 4}), nil, false)
	s.stuck = newWatchdog(time.Hour, func() {})
	return s
}

// take hands the writer at most writeBatchBytes at a time (at least one
// frame), in order, until the queue is empty.
func TestTakeBatches(t *testing.T) {
	const k = writeBatchBytes
	tests := []struct {
		name    string
		sizes   []int
		batches [][]int
	}{
		{"empty", nil, nil},
		{"small frames in one batch", []int{10, 20, 30}, [][]int{{10, 20, 30}}},
		{"cut at the batch bound", []int{k / 2, k / 2, 1}, [][]int{{k / 2, k / 2}, {1}}},
		{"a frame over the bound goes alone", []int{1, 2 * k, 1}, [][]int{{1}, {2 * k}, {1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSession(1 << 30)
			for _, n := range tt.sizes {
				s.enqueue(outFrame{data: make([]byte, n), size: n})
			}
			var got [][]int
			var buf []outFrame
			for {
				buf, _ = s.take(buf)
				if len(buf) == 0 {
					break
				}
				var sizes []int
				for _, f := range buf {
					sizes = append(sizes, f.size)
				}
				got = append(got, sizes)
				s.written(buf)
			}
			if !slices.EqualFunc(got, tt.batches, slices.Equal) {
				t.Fatalf("batches %v, want %v", got, tt.batches)
			}
			if s.queued != 0 {
				t.Fatalf("%d bytes still accounted after everything was written", s.queued)
			}
		})
	}
}

// A push over the byte bound makes the session a slow consumer once: the
// queue is dropped, the slots its responses held are given back, and later
// frames are dropped.
func TestSlowConsumerOnce(t *testing.T) {
	s := testSession(100)
	s.slots <- struct{}{} // a request in flight
	s.enqueue(outFrame{data: make([]byte, 60), size: 60, slot: true})
	p := &push{bin: make([]byte, 30)}
	s.push(p) // 90 bytes queued: under the bound
	if s.slow {
		t.Fatal("slow under the bound")
	}
	s.push(p) // 120 > 100
	if !s.slow || len(s.out) != 0 || len(s.slots) != 0 {
		t.Fatalf("over the bound: slow %v, %d frames queued, %d slots held", s.slow, len(s.out), len(s.slots))
	}
	s.push(p)
	if len(s.out) != 0 {
		t.Fatal("a push to a closing session was queued")
	}
	if batch, last := s.take(nil); len(batch) != 0 || !last {
		t.Fatalf("writer of a slow consumer got %d frames, last %v", len(batch), last)
	}
}

// A queue that never empties (the writer always one frame behind) does
// not grow.
func TestQueueCompacts(t *testing.T) {
	s := testSession(1 << 30)
	big := outFrame{data: make([]byte, writeBatchBytes), size: writeBatchBytes}
	s.enqueue(big)
	var buf []outFrame
	for range 1000 {
		s.enqueue(big)
		buf, _ = s.take(buf)
		s.written(buf)
	}
	if len(s.out) > 4 {
		t.Fatalf("queue slice holds %d entries for 1 frame waiting", len(s.out))
	}
}

// rest stops the writer only when nothing is left for it: not when a frame
// or the close came after its take found the queue empty, which would
// then wait for the next frame; but it does while a request's worker
// writes, which starts the writer again when done.
func TestWriterRests(t *testing.T) {
	tests := []struct {
		name     string
		between  func(s *session) // after take found nothing, before rest
		wantRest bool
	}{
		{"nothing came", func(*session) {}, true},
		{"a frame came", func(s *session) { s.enqueue(outFrame{data: []byte{1}, size: 1}) }, false},
		{"the session closed", func(s *session) { s.closeOut() }, false},
		{"a request's worker writes", func(s *session) {
			s.writing = true
			s.enqueue(outFrame{data: []byte{1}, size: 1})
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSession(1 << 30) // hasWriter: as a writer that runs
			if batch, last := s.take(nil); len(batch) != 0 || last {
				t.Fatalf("take of an empty open session: %d frames, last %v", len(batch), last)
			}
			tt.between(s)
			if got := s.rest(); got != tt.wantRest || s.hasWriter == got {
				t.Fatalf("rest %v with hasWriter %v after, want rest %v", got, s.hasWriter, tt.wantRest)
			}
		})
	}
}
