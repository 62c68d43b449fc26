package oip

import (
	"encoding/json"
	"testing"

	"github.com/warren-farm/warren/pkg/model"
)

// The codec's cost per message (go test -bench . ./pkg/oip): a seed request and a
// seed answer, each through the fast path and through encoding/json alone.
func BenchmarkDecode(b *testing.B) {
	req, _ := EncodeRequest("", &model.Request{Inputs: []model.Tensor{
		{Name: "text", Datatype: model.BYTES, Shape: []int64{1}, Data: []string{"a distinct input of some length"}}}})
	resp, _ := EncodeResponse("seed", "1", "", []model.Tensor{
		{Name: "class", Datatype: model.BYTES, Shape: []int64{1}, Data: []string{"positive"}},
		{Name: "confidence", Datatype: model.FP64, Shape: []int64{1}, Data: []float64{0.87}},
		{Name: "input_length", Datatype: model.INT64, Shape: []int64{1}, Data: []int64{31}},
		{Name: "message", Datatype: model.BYTES, Shape: []int64{1}, Data: []string{"Predicted class: positive with 87.0% confidence"}},
	})
	b.Run("request", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := DecodeRequest(req, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("request-encoding-json", func(b *testing.B) {
		for b.Loop() {
			var w wireRequest
			if err := strictUnmarshal(req, &w); err != nil {
				b.Fatal(err)
			}
			if _, _, err := finishRequest(&w, Limits{}.withDefaults()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("response", func(b *testing.B) {
		for b.Loop() {
			if _, err := DecodeResponse(resp, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("response-encoding-json", func(b *testing.B) {
		for b.Loop() {
			var w wireResponse
			if err := json.Unmarshal(resp, &w); err != nil {
				b.Fatal(err)
			}
			if _, err := finishResponse(&w, Limits{}.withDefaults()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
