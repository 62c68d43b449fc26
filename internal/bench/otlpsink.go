package bench

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// OTLPSink is a minimal OTLP/HTTP trace receiver on 127.0.0.1: it answers
// 200 with an empty body (an empty ExportTraceServiceResponse, which the Go
// exporter accepts) to POST /v1/traces and counts what it received. It stands
// in for a collector, so that the farm-otel variant pays for building,
// batching, encoding and sending spans, and for nothing else.
type OTLPSink struct {
	URL string // http://127.0.0.1:port, the OTEL_EXPORTER_OTLP_ENDPOINT

	srv *http.Server
	ln  net.Listener

	mu sync.Mutex
	st SinkStats
}

// SinkStats is what an OTLPSink received.
type SinkStats struct {
	Requests int64 // POST /v1/traces answered 200
	Bytes    int64 // request bodies, as sent (compressed if they were)
	Spans    int64
	// ByService counts spans by the resource's service.name.
	ByService map[string]int64
	// Bad counts requests refused: wrong method or path, unreadable or
	// undecodable body (answered 4xx).
	Bad int64
}

// StartOTLPSink listens on a free 127.0.0.1 port and serves until Close.
func StartOTLPSink() (*OTLPSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &OTLPSink{URL: "http://" + ln.Addr().String(), ln: ln, st: SinkStats{ByService: map[string]int64{}}}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *OTLPSink) Close() { _ = s.srv.Close() }

// Stats returns a copy of the counts so far.
func (s *OTLPSink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.ByService = map[string]int64{}
	for k, v := range s.st.ByService {
		st.ByService[k] = v
	}
	return st
}

func (s *OTLPSink) bad(w http.ResponseWriter, code int) {
	s.mu.Lock()
	s.st.Bad++
	s.mu.Unlock()
	http.Error(w, http.StatusText(code), code)
}

func (s *OTLPSink) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		s.bad(w, http.StatusNotFound)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		s.bad(w, http.StatusBadRequest)
		return
	}
	body := raw
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			s.bad(w, http.StatusBadRequest)
			return
		}
	}
	byService := map[string]int64{}
	n, err := countSpans(body, byService)
	if err != nil {
		s.bad(w, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.st.Requests++
	s.st.Bytes += int64(len(raw))
	s.st.Spans += int64(n)
	for k, v := range byService {
		s.st.ByService[k] += v
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

var errBadProto = errors.New("malformed protobuf")

// eachBytesField calls fn with the payload of every length-delimited field
// num of the protobuf message b, skipping the other fields.
func eachBytesField(b []byte, num protowire.Number, fn func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return errBadProto
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return errBadProto
			}
			if err := fn(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return errBadProto
		}
		b = b[l:]
	}
	return nil
}

// countSpans counts the spans of an ExportTraceServiceRequest by walking the
// wire format, without decoding the spans:
//
//	ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
//	ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
//	Resource      { repeated KeyValue attributes = 1; }
//	KeyValue      { string key = 1; AnyValue value = 2; }
//	AnyValue      { string string_value = 1; ... }
//	ScopeSpans    { InstrumentationScope scope = 1; repeated Span spans = 2; }
//
// byService, if not nil, receives the counts by the resource's service.name.
func countSpans(req []byte, byService map[string]int64) (int, error) {
	total := 0
	err := eachBytesField(req, 1, func(rs []byte) error {
		service := ""
		err := eachBytesField(rs, 1, func(res []byte) error {
			return eachBytesField(res, 1, func(kv []byte) error {
				var key, val string
				err := eachBytesField(kv, 1, func(k []byte) error { key = string(k); return nil })
				if err != nil {
					return err
				}
				err = eachBytesField(kv, 2, func(any []byte) error {
					return eachBytesField(any, 1, func(s []byte) error { val = string(s); return nil })
				})
				if key == "service.name" {
					service = val
				}
				return err
			})
		})
		if err != nil {
			return err
		}
		n := 0
		err = eachBytesField(rs, 2, func(ss []byte) error {
			return eachBytesField(ss, 2, func([]byte) error { n++; return nil })
		})
		total += n
		if byService != nil && n > 0 {
			byService[service] += int64(n)
		}
		return err
	})
	return total, err
}
