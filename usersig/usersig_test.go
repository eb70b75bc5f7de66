package usersig

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	secret := []byte("s3cret")
	good, err := Gen(secret, "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	short, err := Gen(secret, "bob", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	body, _, _ := strings.Cut(good, ".")
	now := time.Now()
	tests := []struct {
		name   string
		secret []byte
		token  string
		now    time.Time
		user   string
		err    error
	}{
		{"valid", secret, good, now, "alice", nil},
		{"other secret", []byte("other"), good, now, "", ErrSignature},
		{"expired", secret, short, now.Add(2 * time.Second), "", ErrExpired},
		{"no dot", secret, "abc", now, "", ErrMalformed},
		{"empty", secret, "", now, "", ErrMalformed},
		{"bad base64 sig", secret, body + ".!!", now, "", ErrMalformed},
		{"tampered body", secret, "x" + good, now, "", ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, err := Verify(tt.secret, tt.token, tt.now)
			if !errors.Is(err, tt.err) || user != tt.user {
				t.Fatalf("Verify = %q, %v; want %q, %v", user, err, tt.user, tt.err)
			}
		})
	}
}

func TestGenRejects(t *testing.T) {
	for _, tt := range []struct {
		secret []byte
		user   string
		ttl    time.Duration
	}{{nil, "a", time.Hour}, {[]byte("k"), "", time.Hour}, {[]byte("k"), "a", 0}} {
		if _, err := Gen(tt.secret, tt.user, tt.ttl); err == nil {
			t.Errorf("Gen(%q, %q, %v) succeeded", tt.secret, tt.user, tt.ttl)
		}
	}
}

func FuzzVerify(f *testing.F) {
	secret := []byte("k")
	tok, _ := Gen(secret, "alice", time.Hour)
	f.Add(tok)
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, token string) {
		user, err := Verify(secret, token, time.Now())
		if err == nil && user == "" {
			t.Fatal("accepted a token with no user")
		}
	})
}
