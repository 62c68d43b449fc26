package redisstore

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"testing"

	"github.com/warren-farm/warren/pkg/jobs/internal/nanos"
)

// FuzzJobFromFlat: a job hash as a script returns it (field, value, …), from a
// database anyone with access may have written. A hash is accepted only with an
// id and a known status and well-formed numbers; an accepted job, written back
// the way the store writes its fields (hashFields and the scripts' results),
// reads back unchanged.
func FuzzJobFromFlat(f *testing.F) {
	for _, s := range []string{
		"id\x00a\x00status\x00failed\x00created\x001\x00started\x002\x00finished\x003\x00attempts\x003\x00" +
			"result\x00{\"a\":1}\x00error\x00{\"reason\":\"r\",\"message\":\"m\"}\x00request_id\x00req\x00input\x00\x01\xff\x00" +
			"idem\x00k\x00body_hash\x00h\x00published\x001\x00start_by\x004\x00worker\x00w\x00model\x00m\x00model_version\x00v\x00format\x00v2",
		"id\x00a\x00status\x00queued\x00created\x00x", "id\x00a\x00status\x00weird", "status\x00queued",
		"id\x00a\x00status\x00failed\x00error\x00{oops", "id\x00a\x00status\x00queued\x00attempts\x00-5", "odd",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var flat []any
		for _, p := range bytes.Split(data, []byte{0}) {
			flat = append(flat, string(p))
		}
		j, err := jobFromFlat(flat)
		if err != nil {
			return
		}
		if !j.Status.Valid() || j.ID == "" || j.Attempts < 0 {
			t.Fatalf("accepted a hash with id %q, status %q, attempts %d", j.ID, j.Status, j.Attempts)
		}
		fields := hashFields(j)
		m := map[string]string{}
		for i := 0; i+1 < len(fields); i += 2 {
			m[fields[i].(string)] = fields[i+1].(string)
		}
		m["attempts"] = strconv.Itoa(j.Attempts)
		if j.Published {
			m["published"] = "1"
		}
		if n := nanos.OfPtr(j.StartedAt); n != 0 {
			m["started"] = strconv.FormatInt(n, 10)
		}
		if n := nanos.OfPtr(j.FinishedAt); n != 0 {
			m["finished"] = strconv.FormatInt(n, 10)
		}
		if j.Result != nil {
			m["result"] = string(j.Result)
		}
		if j.Error != nil {
			b, _ := json.Marshal(j.Error)
			m["error"] = string(b)
		}
		j2, err := jobFromMap(m)
		if err != nil {
			t.Fatalf("the store's own encoding of an accepted job is refused: %v: %v", err, m)
		}
		if len(j.Input) == 0 { // an empty input is not written: absent either way
			j.Input, j2.Input = nil, nil
		}
		if !reflect.DeepEqual(j, j2) {
			t.Fatalf("round trip changed the job:\n%+v\n%+v", j, j2)
		}
	})
}
