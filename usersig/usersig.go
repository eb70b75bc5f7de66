// Package usersig mints and checks Readmark user tokens: HMAC-SHA256
// signatures binding a user ID to an expiry time.
//
// A token is two base64url (unpadded) parts joined by a dot: a JSON payload
// {"v":1,"uid":"alice","exp":<unix seconds>} and the HMAC-SHA256 of the
// first part's text under the server's secret. App servers mint tokens for
// their users with Gen and the same secret file the Readmark server uses.
package usersig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Errors returned by Verify.
var (
	ErrMalformed = errors.New("usersig: malformed token")
	ErrSignature = errors.New("usersig: bad signature")
	ErrExpired   = errors.New("usersig: token expired")
)

type payload struct {
	V   int    `json:"v"`
	UID string `json:"uid"`
	Exp int64  `json:"exp"`
}

var enc = base64.RawURLEncoding

// Gen returns a token for userID valid for ttl from now.
func Gen(secret []byte, userID string, ttl time.Duration) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("usersig: empty secret")
	}
	if userID == "" {
		return "", errors.New("usersig: empty user ID")
	}
	if ttl <= 0 {
		return "", errors.New("usersig: ttl must be positive")
	}
	raw, err := json.Marshal(payload{V: 1, UID: userID, Exp: time.Now().Add(ttl).Unix()})
	if err != nil {
		return "", err
	}
	body := enc.EncodeToString(raw)
	return body + "." + enc.EncodeToString(sign(secret, body)), nil
}

// Verify checks token's signature under secret and its expiry against now,
// and returns the user ID it was minted for.
func Verify(secret []byte, token string, now time.Time) (userID string, err error) {
	body, sig, ok := strings.Cut(token, ".")
	if !ok || body == "" || sig == "" {
		return "", ErrMalformed
	}
	got, err := enc.DecodeString(sig)
	if err != nil {
		return "", ErrMalformed
	}
	if !hmac.Equal(got, sign(secret, body)) {
		return "", ErrSignature
	}
	raw, err := enc.DecodeString(body)
	if err != nil {
		return "", ErrMalformed
	}
	var p payload
	if err := json.Unmarshal(raw, &p); err != nil || p.V != 1 || p.UID == "" {
		return "", ErrMalformed
	}
	if now.Unix() >= p.Exp {
		return "", ErrExpired
	}
	return p.UID, nil
}

func sign(secret []byte, body string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(body))
	return m.Sum(nil)
}
