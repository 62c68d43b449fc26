package boltstore

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine (a janitor, a notice relay, a
// go-redis subscription) outlives the tests: every store is closed in
// t.Cleanup, so none may.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
