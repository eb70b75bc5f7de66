package main

import (
	"context"
	"errors"
)

func runBaseline(ctx context.Context, cfg *config, res *Result, prog *progress) error {
	return errors.New("todo")
}
func runSteady(ctx context.Context, cfg *config, t *target, res *Result, prog *progress) error {
	return errors.New("todo")
}
func runQuery(ctx context.Context, cfg *config, t *target, res *Result, prog *progress) error {
	return errors.New("todo")
}
