package config

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	var sb strings.Builder
	log := NewLogger(&sb, "warn", "json", "service", "api")
	log.Info("hidden")
	log.Warn("shown", "n", 1)
	var line map[string]any
	if err := json.Unmarshal([]byte(sb.String()), &line); err != nil {
		t.Fatalf("%v: %q", err, sb.String())
	}
	if line["msg"] != "shown" || line["service"] != "api" || line["level"] != "WARN" {
		t.Errorf("line %v", line)
	}
	sb.Reset()
	NewLogger(&sb, "debug", "text").Debug("plain")
	if !strings.Contains(sb.String(), "level=DEBUG msg=plain") {
		t.Errorf("text line %q", sb.String())
	}
}
