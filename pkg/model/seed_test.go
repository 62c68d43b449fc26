package model

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"
)

func TestSeedShapeAndDeterminism(t *testing.T) {
	m := NewSeed(SeedConfig{Seed: 7})
	msg := regexp.MustCompile(`^Predicted class: (cat|dog|bird|fish|rabbit) with \d{2}\.\d% confidence$`)
	seenClass := map[string]bool{}
	for _, data := range []string{"", "hi", "cat image data", "héllo wörld 🐇", "this is a medium length input"} {
		out, err := m.Predict(context.Background(), []Input{{Data: data}, {Data: data}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 2 || out[0] != out[1] {
			t.Fatalf("%q: not deterministic within a batch: %+v", data, out)
		}
		again, _ := m.Predict(context.Background(), []Input{{Data: data}})
		if again[0] != out[0] {
			t.Fatalf("%q: not deterministic across calls", data)
		}
		p := out[0].Prediction
		if p.Confidence < 0.70 || p.Confidence > 0.99 || p.Confidence*100 != float64(int(p.Confidence*100+0.5)) {
			t.Errorf("%q: confidence %v outside [0.70,0.99] or not 2 decimals", data, p.Confidence)
		}
		if !msg.MatchString(out[0].Message) {
			t.Errorf("message %q", out[0].Message)
		}
		seenClass[p.Class] = true
	}
	// Code points, not bytes: the lab's len(); README's "cat image data" is 14.
	out, _ := m.Predict(context.Background(), []Input{{Data: "cat image data"}, {Data: "héllo 🐇"}})
	if out[0].Prediction.InputLength != 14 || out[1].Prediction.InputLength != 7 {
		t.Fatalf("input_length = %d, %d; want 14, 7", out[0].Prediction.InputLength, out[1].Prediction.InputLength)
	}
}

func TestSeedMessageFormatting(t *testing.T) {
	o := NewSeed(SeedConfig{}).predictOne("x")
	want := "Predicted class: " + o.Prediction.Class + " with "
	if o.Message[:len(want)] != want {
		t.Fatal(o.Message)
	}
}

func TestSeedSpreadsClasses(t *testing.T) {
	m := NewSeed(SeedConfig{Seed: 1})
	counts := map[string]int{}
	for i := 0; i < 1000; i++ {
		out, _ := m.Predict(context.Background(), []Input{{Data: string(rune('a'+i%26)) + time.Duration(i).String()}})
		counts[out[0].Prediction.Class]++
	}
	for _, c := range Classes {
		if counts[c] < 120 {
			t.Fatalf("class %s chosen %d/1000 times: %v", c, counts[c], counts)
		}
	}
	other := NewSeed(SeedConfig{Seed: 2})
	diff := 0
	for i := 0; i < 100; i++ {
		d := time.Duration(i).String()
		a, _ := m.Predict(context.Background(), []Input{{Data: d}})
		b, _ := other.Predict(context.Background(), []Input{{Data: d}})
		if a[0] != b[0] {
			diff++
		}
	}
	if diff < 50 {
		t.Fatalf("MODEL_SEED changed only %d/100 predictions", diff)
	}
}

func TestSeedLatencyHonoursDeadline(t *testing.T) {
	m := NewSeed(SeedConfig{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := m.Predict(ctx, []Input{{Data: "x"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Predict ignored the deadline")
	}
}
