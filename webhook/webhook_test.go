package webhook

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"events":[]}`)
	now := time.Unix(1_800_000_000, 0)
	signed := func(ts int64, sig string) http.Header {
		h := http.Header{}
		h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		h.Set(HeaderSignature, sig)
		return h
	}
	ts := now.Unix()
	for _, tt := range []struct {
		name   string
		h      http.Header
		body   []byte
		secret []byte
		want   error
	}{
		{"valid", signed(ts, Sign(secret, ts, body)), body, secret, nil},
		{"slightly early clock", signed(ts+30, Sign(secret, ts+30, body)), body, secret, nil},
		{"tampered body", signed(ts, Sign(secret, ts, body)), []byte(`{"events":[{}]}`), secret, ErrBadSignature},
		{"other secret", signed(ts, Sign(secret, ts, body)), body, []byte("other"), ErrBadSignature},
		{"timestamp changed", signed(ts+1, Sign(secret, ts, body)), body, secret, ErrBadSignature},
		{"replayed late", signed(ts-600, Sign(secret, ts-600, body)), body, secret, ErrTooOld},
		{"from the future", signed(ts+600, Sign(secret, ts+600, body)), body, secret, ErrTooOld},
		{"uppercase hex", signed(ts, "AB"+Sign(secret, ts, body)[2:]), body, secret, ErrBadSignature},
		{"no headers", http.Header{}, body, secret, ErrNoSignature},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := verifyAt(tt.secret, tt.h, tt.body, 5*time.Minute, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	if err := verifyAt(secret, signed(0, "x"), body, time.Minute, now); err == nil {
		t.Fatal("bad signature accepted")
	}
	h := http.Header{}
	h.Set(HeaderTimestamp, "soon")
	h.Set(HeaderSignature, "00")
	if err := verifyAt(secret, h, body, time.Minute, now); err == nil {
		t.Fatal("non-numeric timestamp accepted")
	}
}

// A known answer computed independently:
// echo -n '1700000000.{"events":[]}' | openssl dgst -sha256 -hmac whsec
func TestSignKnownAnswer(t *testing.T) {
	const want = "d5cebb38cfa8b6704bfba53eb3c4d44ecd08c1f9a9944337dc4ddfed63383ee1"
	if got := Sign([]byte("whsec"), 1700000000, []byte(`{"events":[]}`)); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
