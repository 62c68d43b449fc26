package bench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// NewHTTPTransport returns a keep-alive transport for c concurrent callers:
// no proxy (traffic stays on loopback), no compression, and enough idle
// connections per host that no caller ever dials twice.
func NewHTTPTransport(c int) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          c + 16,
		MaxIdleConnsPerHost:   c + 16,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 60 * time.Second,
		ForceAttemptHTTP2:     false,
	}
}

// modelPrediction must appear in a successful /process answer.
var modelPrediction = []byte(`"model_prediction"`)

// seedOutputs must appear in a successful v2 answer of the seed model: its
// outputs are class, confidence, input_length and message.
var seedOutputs = []byte(`"outputs":[{"name":"class"`)

// ProcessCaller returns a CallFunc factory that POSTs to url (the farm's
// /process) through rt. Every request carries distinct data
// ("bench-<caller>-<seq>") so nothing can be served from a cache. A call
// succeeds on a 200 whose body holds "model_prediction"; other answers fail
// with their status code as the label ("200-without-model_prediction" for a
// 200 without a prediction). Bodies and buffers are reused per caller.
func ProcessCaller(rt http.RoundTripper, url string) func(i int) CallFunc {
	return PostCaller(rt, url, func(i int) BodyFunc {
		prefix := `{"data":"bench-` + strconv.Itoa(i) + `-`
		const suffix = `","forward_to_model":true}`
		return func(body []byte, seq uint64) []byte {
			body = append(body, prefix...)
			body = strconv.AppendUint(body, seq, 10)
			return append(body, suffix...)
		}
	}, func(resp []byte) string {
		if !bytes.Contains(resp, modelPrediction) {
			return "200-without-model_prediction"
		}
		return ""
	})
}

// SeedInferCaller is ProcessCaller's twin for POST /v2/models/seed/infer (url):
// the same input string ("bench-<caller>-<seq>") as the one BYTES element of
// the seed model's input "data", the request /process makes for it. A call
// succeeds on a 200 whose body holds the seed model's outputs.
func SeedInferCaller(rt http.RoundTripper, url string) func(i int) CallFunc {
	return PostCaller(rt, url, func(i int) BodyFunc {
		prefix := `{"inputs":[{"name":"data","datatype":"BYTES","shape":[1],"data":["bench-` + strconv.Itoa(i) + `-`
		const suffix = `"]}]}`
		return func(body []byte, seq uint64) []byte {
			body = append(body, prefix...)
			body = strconv.AppendUint(body, seq, 10)
			return append(body, suffix...)
		}
	}, func(resp []byte) string {
		if !bytes.Contains(resp, seedOutputs) {
			return "200-without-outputs"
		}
		return ""
	})
}

// BodyFunc appends the body of request seq (1, 2, ...) to body and returns it.
type BodyFunc func(body []byte, seq uint64) []byte

// PostCaller returns a CallFunc factory that POSTs JSON to url through rt:
// caller i's bodies come from newBody(i), and a 200's body is judged by check
// ("" for a success, else a failure label). Other answers fail with their
// status code as the label, transport errors with errorLabel's. Bodies and
// buffers are reused per caller.
func PostCaller(rt http.RoundTripper, url string, newBody func(i int) BodyFunc, check func(resp []byte) string) func(i int) CallFunc {
	return func(i int) CallFunc {
		next := newBody(i)
		var (
			seq  uint64
			body = make([]byte, 0, 128)
			rd   = bytes.NewReader(nil)
			resp bytes.Buffer
		)
		return func(ctx context.Context) string {
			seq++
			body = next(body[:0], seq)
			rd.Reset(body)
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, rd)
			if err != nil {
				return "bad-request"
			}
			req.Header.Set("Content-Type", "application/json")
			res, err := rt.RoundTrip(req)
			if err != nil {
				label := errorLabel(ctx, err)
				if ctx.Err() == nil {
					// Don't spin a core on a dead endpoint.
					time.Sleep(time.Millisecond)
				}
				return label
			}
			resp.Reset()
			_, err = resp.ReadFrom(res.Body)
			_ = res.Body.Close()
			switch {
			case err != nil:
				return errorLabel(ctx, err)
			case res.StatusCode != http.StatusOK:
				return strconv.Itoa(res.StatusCode)
			}
			return check(resp.Bytes())
		}
	}
}

// errorLabel turns a transport error into a short failure label.
func errorLabel(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "conn-refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "conn-reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "transport-error"
}
