package boltstore

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeJob: the bytes a job record is read back from (a corrupt or
// foreign database file). A record is accepted only with an id and a known
// status, and an accepted one survives encode → decode unchanged (its result
// compacted, as encoding/json writes raw JSON).
func FuzzDecodeJob(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","status":"failed","created":1,"started":2,"finished":3,"attempts":3,"result":{"a":[1, 2]},` +
			`"error":{"reason":"r","message":"m"},"request_id":"req","input":"AAEC/w==","idem":"k","body_hash":"h",` +
			`"published":true,"start_by":4,"worker":"w","model":"m","model_version":"v","format":"process"}`,
		`{"id":"b","status":"queued","created":-1}`, `{"id":"c","status":"weird"}`, `{"status":"queued"}`,
		`{"id":"d","status":"succeeded","result":null,"input":"!"}`, `{"id":"\ud800","status":"running"}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := decodeJob(data)
		if err != nil {
			return
		}
		if !j.Status.Valid() || j.ID == "" {
			t.Fatalf("accepted a record with id %q, status %q", j.ID, j.Status)
		}
		enc, err := encodeJob(j)
		if err != nil {
			t.Fatalf("an accepted record does not encode: %v", err)
		}
		j2, err := decodeJob(enc)
		if err != nil {
			t.Fatalf("the encoding of an accepted record is refused: %v: %s", err, enc)
		}
		var want bytes.Buffer
		if len(j.Result) > 0 {
			if err := json.Compact(&want, j.Result); err != nil {
				t.Fatalf("accepted a result that is not JSON: %v", err)
			}
		}
		if !bytes.Equal(j2.Result, want.Bytes()) {
			t.Fatalf("result %s read back as %s", j.Result, j2.Result)
		}
		j.Result, j2.Result = nil, nil
		if len(j.Input) == 0 { // "input":"" reads back as absent: empty either way
			j.Input, j2.Input = nil, nil
		}
		if !reflect.DeepEqual(j, j2) {
			t.Fatalf("round trip changed the job:\n%+v\n%+v", j, j2)
		}
	})
}
