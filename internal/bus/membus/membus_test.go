package membus_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/readmark/readmark/internal/bus"
	"github.com/readmark/readmark/internal/bus/bustest"
	"github.com/readmark/readmark/internal/bus/membus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	bustest.Run(t, func(*testing.T) bus.Bus { return membus.New() })
}
