package tracing

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		wantEnabled bool
		wantErr     string
	}{
		{name: "zero value is disabled", cfg: Config{}},
		{name: "sample ratio alone does not enable", cfg: Config{SampleRatio: 0.5, Protocol: "nonsense"}},
		{name: "endpoint enables", cfg: Config{Endpoint: "http://127.0.0.1:4318"}, wantEnabled: true},
		{name: "traces endpoint alone enables", cfg: Config{TracesEndpoint: "https://127.0.0.1:4318/v1/traces"}, wantEnabled: true},
		{name: "grpc", cfg: Config{Endpoint: "http://127.0.0.1:4317", Protocol: ProtocolGRPC}, wantEnabled: true},
		{name: "exporter enables", cfg: Config{Exporter: discardExporter{}, SampleRatio: 0.25}, wantEnabled: true},
		{name: "http/json is refused", cfg: Config{Endpoint: "http://127.0.0.1:4318", Protocol: "http/json"}, wantErr: "not supported"},
		{name: "endpoint without scheme", cfg: Config{Endpoint: "127.0.0.1:4318"}, wantErr: "http:// or https://"},
		{name: "endpoint with another scheme", cfg: Config{Endpoint: "grpc://127.0.0.1:4317"}, wantErr: "http:// or https://"},
		{name: "bad traces endpoint", cfg: Config{Endpoint: "http://127.0.0.1:4318", TracesEndpoint: "http://%zz"}, wantErr: "endpoint"},
		{name: "ratio above 1", cfg: Config{Exporter: discardExporter{}, SampleRatio: 1.5}, wantErr: "SampleRatio"},
		{name: "negative ratio", cfg: Config{Exporter: discardExporter{}, SampleRatio: -0.1}, wantErr: "SampleRatio"},
		{name: "NaN ratio", cfg: Config{Exporter: discardExporter{}, SampleRatio: math.NaN()}, wantErr: "SampleRatio"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := New(context.Background(), tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tr.Shutdown(context.Background()) }()
			if tr.Enabled() != tt.wantEnabled {
				t.Fatalf("Enabled() = %v, want %v", tr.Enabled(), tt.wantEnabled)
			}
		})
	}
}

// collector is a loopback OTLP receiver that keeps what it was sent.
type collector struct {
	mu       sync.Mutex
	paths    []string
	requests []*collectortrace.ExportTraceServiceRequest
	got      chan struct{} // receives once per export
}

func newCollector() *collector { return &collector{got: make(chan struct{}, 16)} }

func (c *collector) add(path string, req *collectortrace.ExportTraceServiceRequest) {
	c.mu.Lock()
	c.paths = append(c.paths, path)
	c.requests = append(c.requests, req)
	c.mu.Unlock()
	c.got <- struct{}{}
}

// ServeHTTP implements OTLP/HTTP with binary protobuf.
func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	req := &collectortrace.ExportTraceServiceRequest{}
	if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" ||
		proto.Unmarshal(body, req) != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	c.add(r.URL.Path, req)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// grpcCollector implements OTLP/gRPC's TraceService.
type grpcCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	*collector
}

func (g grpcCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	g.add("grpc", req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// TestOTLPExport sends a real span over OTLP to a loopback collector and checks
// what arrived: the path, the span's name and trace id, and the service name.
func TestOTLPExport(t *testing.T) {
	col := newCollector()
	httpSrv := httptest.NewServer(col) // binds 127.0.0.1
	defer httpSrv.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcSrv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(grpcSrv, grpcCollector{collector: col})
	go func() { _ = grpcSrv.Serve(ln) }()
	defer grpcSrv.Stop()

	tests := []struct {
		name     string
		cfg      Config
		wantPath string
	}{
		{name: "http/protobuf base endpoint", cfg: Config{Endpoint: httpSrv.URL + "/"}, wantPath: "/v1/traces"},
		{name: "http/protobuf traces endpoint", cfg: Config{Endpoint: "http://127.0.0.1:1", TracesEndpoint: httpSrv.URL + "/custom/traces"}, wantPath: "/custom/traces"},
		{name: "grpc", cfg: Config{Endpoint: "http://" + ln.Addr().String(), Protocol: ProtocolGRPC}, wantPath: "grpc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			col.mu.Lock()
			col.paths, col.requests = nil, nil
			col.mu.Unlock()

			tt.cfg.ServiceName = "warren-otlp-test"
			tr, err := New(context.Background(), tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, span := tr.Tracer("test").Start(context.Background(), "exported span")
			traceID := span.SpanContext().TraceID()
			span.End()

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tr.Shutdown(ctx); err != nil { // flushes the batch
				t.Fatal(err)
			}
			select {
			case <-col.got:
			default:
				t.Fatal("the collector received nothing by the time Shutdown returned")
			}

			col.mu.Lock()
			defer col.mu.Unlock()
			if len(col.requests) != 1 || col.paths[0] != tt.wantPath {
				t.Fatalf("collector got %d exports at %v, want 1 at %s", len(col.requests), col.paths, tt.wantPath)
			}
			rs := col.requests[0].GetResourceSpans()
			if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || len(rs[0].GetScopeSpans()[0].GetSpans()) != 1 {
				t.Fatalf("export holds %v, want one span", rs)
			}
			s := rs[0].GetScopeSpans()[0].GetSpans()[0]
			if s.GetName() != "exported span" || string(s.GetTraceId()) != string(traceID[:]) {
				t.Errorf("exported span %q trace %x, want %q trace %s", s.GetName(), s.GetTraceId(), "exported span", traceID)
			}
			var service string
			for _, kv := range rs[0].GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			if service != "warren-otlp-test" {
				t.Errorf("service.name = %q, want warren-otlp-test", service)
			}
		})
	}
}

// TestOTLPExportFailureIsLogged: a collector that refuses spans is reported to
// Config.Logger, and Shutdown still succeeds.
func TestOTLPExportFailureIsLogged(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusBadRequest) // not retryable: fails at once
	}))
	defer refuse.Close()
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))

	tr, err := New(context.Background(), Config{Endpoint: refuse.URL, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Tracer("test").Start(context.Background(), "refused span")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "trace export failed") || !strings.Contains(logs.String(), "spans=1") {
		t.Fatalf("log = %q, want the failed export", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
