package receipts

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

const benchMembers = 100_000

// discardPusher drops frames, so benchmarks do not measure a recording fake.
type discardPusher struct{}

func (discardPusher) Push(string, *pb.ServerFrame)               {}
func (discardPusher) PushExcept(string, uint64, *pb.ServerFrame) {}
func (discardPusher) MayReach(string, uint64) bool               { return true }

var commits atomic.Int64 // group commits, counted by OnCommit

// benchGroup returns an env whose group "g" has benchMembers members m0..,
// and a function that returns message i (sent by m0), creating messages on
// demand.
func benchGroup(b *testing.B) (*env, func(i int) Msg) {
	v := newEnv(b, func(c *Config) { c.Pusher = discardPusher{} })
	v.com.OnCommit = func(ops, requests int) {
		commits.Add(1)
	}
	v.roster.join("g", members(0, benchMembers)...)
	var mu sync.Mutex
	var msgs []Msg
	get := func(i int) Msg {
		mu.Lock()
		defer mu.Unlock()
		for len(msgs) <= i {
			msgs = append(msgs, v.msgs.send("m0", "", "g", true))
		}
		return msgs[i]
	}
	return v, get
}

// userNames caches "m<i>" so the benchmarks do not measure Sprintf.
var userNames = sync.OnceValue(func() []string { return members(0, benchMembers) })

// BenchmarkSend measures receipts per second through Engine.Send, with many
// concurrent callers (256 goroutines per core), on a real Pebble store with
// synced group commits. Each call returns only once its receipts are
// durable; the time includes validation, state updates, serialization of
// the touched read sets once per group commit, the fsyncs and the coalesced
// pushes (to a recording pusher). Every receipt is new: each reader appears
// once per message, and a fresh message is started every 99,999 readers.
//
//   - one-message: one receipt per call, all into one 100,000-member message.
//   - 20-messages-batch-20: each call carries 20 receipts, one for each of 20
//     messages of the same 100,000-member group.
func BenchmarkSend(b *testing.B) {
	names := userNames()
	const perMsg = benchMembers - 1
	b.Run("one-message", func(b *testing.B) {
		v, msg := benchGroup(b)
		msg(b.N / perMsg) // create before timing
		var next atomic.Int64
		commits.Store(0)
		b.SetParallelism(1024)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb_ *testing.PB) {
			for pb_.Next() {
				i := int(next.Add(1) - 1)
				m := msg(i / perMsg)
				u := names[1+i%perMsg]
				if err := v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "receipts/s")
		b.ReportMetric(float64(b.N)/float64(max(commits.Load(), 1)), "receipts/commit")
	})
	b.Run("20-messages-batch-20", func(b *testing.B) {
		v, msg := benchGroup(b)
		sets := b.N/perMsg + 1
		msg(20*sets - 1)
		var next atomic.Int64
		commits.Store(0)
		b.SetParallelism(1024)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb_ *testing.PB) {
			refs := make([]*pb.MessageRef, 20)
			for pb_.Next() {
				i := int(next.Add(1) - 1)
				set := i / perMsg
				u := names[1+i%perMsg]
				for j := range refs {
					refs[j] = refFor(u, msg(20*set+j))
				}
				if err := v.eng.Send(bg, u, refs); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(20*b.N)/b.Elapsed().Seconds(), "receipts/s")
		b.ReportMetric(float64(20*b.N)/float64(max(commits.Load(), 1)), "receipts/commit")
	})
}

// BenchmarkReadStateBytes reports the stored size of one 100,000-member
// message's read set (tag byte included) when nobody, everybody, or a random
// half has read it; ns/op is the cost of encoding it once (as each group
// commit does for every touched message).
func BenchmarkReadStateBytes(b *testing.B) {
	for _, state := range []string{"none", "all", "half"} {
		b.Run(state, func(b *testing.B) {
			rb := readSet100k(state)
			var n int
			for b.Loop() {
				n = len(encodeReadSet(rb, benchMembers))
			}
			b.ReportMetric(float64(n), "bytes")
			b.ReportMetric(float64(8*n)/benchMembers, "bits/member")
		})
	}
}

// halfRead sends receipts from a random half of the members of a fresh
// 100,000-member message, through the engine (so read times are logged).
func halfRead(b *testing.B) (*env, Msg) {
	v, msg := benchGroup(b)
	m := msg(0)
	names := userNames()
	r := rand.New(rand.NewPCG(5, 6))
	var readers []string
	for i := 1; i < benchMembers; i++ {
		if r.IntN(2) == 0 {
			readers = append(readers, names[i])
		}
	}
	var wg sync.WaitGroup
	const workers = 64
	for w := range workers {
		wg.Go(func() {
			for j := w; j < len(readers); j += workers {
				if err := v.eng.Send(bg, readers[j], []*pb.MessageRef{refFor(readers[j], m)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return v, m
}

// BenchmarkReadMembersPage measures one ReadMembers call returning a page of
// 100 members of a half-read 100,000-member message, walking the list page
// by page (restarting at the end). The read list includes each member's
// read time (one reverse scan of its receipt log per member); the unread
// list is derived from roster and read set.
func BenchmarkReadMembersPage(b *testing.B) {
	v, m := halfRead(b)
	for _, f := range []pb.ReadMembersFilter{pb.ReadMembersFilter_READ_MEMBERS_FILTER_READ, pb.ReadMembersFilter_READ_MEMBERS_FILTER_UNREAD} {
		name := map[pb.ReadMembersFilter]string{0: "read", 1: "unread"}[f]
		b.Run(name, func(b *testing.B) {
			var next uint64
			b.ReportAllocs()
			for b.Loop() {
				resp, err := v.eng.ReadMembers(bg, "m0", &pb.ReadMembersRequest{Message: refFor("m0", m), Filter: f, NextSeq: next, Count: 100})
				if err != nil {
					b.Fatal(err)
				}
				if len(resp.Members) != 100 && !resp.IsFinished {
					b.Fatalf("short page: %d", len(resp.Members))
				}
				next = resp.NextSeq
				if resp.IsFinished {
					next = 0
				}
			}
		})
	}
}

// BenchmarkGet100 measures one Get of 100 of the caller's group messages
// (1,000-member group, each message read by a different tenth of it), all
// read states cached; each op returns 100 receipts with current counts.
func BenchmarkGet100(b *testing.B) {
	v := newEnv(b, nil)
	v.roster.join("g", members(0, 1000)...)
	refs := make([]*pb.MessageRef, 100)
	for i := range refs {
		m := v.msgs.send("m0", "", "g", true)
		refs[i] = refFor("m0", m)
		for r := 1 + i%10; r < 1000; r += 10 {
			u := fmt.Sprintf("m%d", r)
			if err := v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		rs, err := v.eng.Get(bg, "m0", refs)
		if err != nil || len(rs) != 100 {
			b.Fatal(err)
		}
	}
}
