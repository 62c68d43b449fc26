package api

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/warren-farm/warren/pkg/catalog"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/reason"
)

const loggedOK = `{"status":"Input logged successfully"}`

// labInput is a validated /process (or legacy /jobs) body.
type labInput struct {
	data    string
	forward bool
}

// readLabInput reads and validates the seed lab's body: data (a string, required)
// and forward_to_model (pydantic's lax bool, default true).
func (h *handlers) readLabInput(c echo.Context, body []byte, ve *httperr.ValidationError) (labInput, error) {
	obj, err := httperr.Object(body)
	if err != nil {
		return labInput{}, err
	}
	data, _ := httperr.String(obj, "data", ve)
	forward := httperr.Bool(obj, "forward_to_model", true, ve)
	return labInput{data: data, forward: forward}, nil
}

// process is POST /process, the seed lab's contract on DEFAULT_MODEL.
func (h *handlers) process(c echo.Context) error {
	req := c.Request()
	body, err := httperr.ReadBody(req, h.cfg.BodyLimit)
	if err != nil {
		return err
	}
	ve := &httperr.ValidationError{}
	in, err := h.readLabInput(c, body, ve)
	if err != nil {
		return err
	}
	opts := h.callOptions(req, ve)
	if err := ve.OrNil(); err != nil {
		return err
	}
	rid := requestIDOf(c)
	if h.cfg.Logger.Enabled(req.Context(), slog.LevelDebug) {
		// Inputs may be private: their size and a hash, never the text.
		sum := sha256.Sum256([]byte(in.data))
		h.cfg.Logger.Debug("received input", "request_id", rid, "bytes", len(in.data),
			"input_sha256", hex.EncodeToString(sum[:8]), "forward_to_model", in.forward)
	}
	if !in.forward {
		return c.JSONBlob(http.StatusOK, []byte(loggedOK))
	}
	v, err := h.defaultModel(req)
	if err != nil {
		return err
	}
	payload, err := oip.EncodeRequest("", seedRequest(in.data))
	if err != nil {
		return err
	}
	if opts.async {
		return h.handOff(c, v, payload, formatProcess, opts.wait)
	}
	reply, err := h.call(c, v, payload, opts.timeout)
	if err != nil {
		return err
	}
	out, err := processAnswer(reply.Body, rid, v.Route, reply.Worker, in.data)
	if err != nil {
		return httperr.Of(reason.ModelError, "Model error: "+err.Error(), err)
	}
	return c.JSONBlob(http.StatusOK, out)
}

// defaultModel picks the version of DEFAULT_MODEL that req goes to (the model's
// traffic settings) for the lab's endpoints. A default model no worker ever
// announced is "no predictor can answer" (the lab's 503), not a 404; one that does
// not take the seed lab's input cannot answer /process.
func (h *handlers) defaultModel(req *http.Request) (catalog.Version, error) {
	if err := mayCall(req, h.cfg.DefaultModel); err != nil {
		return catalog.Version{}, err
	}
	v, err := h.catalog.Pick(h.cfg.DefaultModel, req.Header.Get)
	if err != nil && !h.broker() {
		return v, httperr.Of(reason.BrokerUnavailable, "Model service is unavailable: not connected to the broker", err)
	}
	if err != nil {
		return v, httperr.Of(reason.NoWorkers, "Model service is unavailable: no predictor worker is running (no worker has served model "+h.cfg.DefaultModel+")", err)
	}
	if !model.IsSeedShaped(&v.Metadata) {
		return v, httperr.Of(reason.NotReady, "Model service is unavailable: DEFAULT_MODEL "+h.cfg.DefaultModel+
			" does not take the seed lab's input (one BYTES input \"data\" and outputs class, confidence, input_length, message)", nil)
	}
	return v, nil
}

// seedRequest is the v2 request for one lab input.
func seedRequest(data string) *model.Request {
	return &model.Request{Inputs: []model.Tensor{{Name: model.SeedInput, Datatype: model.BYTES, Shape: []int64{1}, Data: []string{data}}}}
}

// processAnswer turns a worker's v2 answer to a lab input into /process's 200 body:
// {"status":"Input logged successfully","model_prediction":{…}}.
func processAnswer(v2 []byte, rid string, r queue.Route, worker, input string) ([]byte, error) {
	resp, err := oip.DecodeResponse(v2, oip.Limits{})
	if err != nil {
		return nil, err
	}
	a, err := model.NewAnswer(&model.Response{Outputs: resp.Outputs}, 0,
		model.AnswerInfo{RequestID: rid, Model: r.Model, Version: r.Version, WorkerID: worker, Input: input})
	if err != nil {
		return nil, err
	}
	pred, err := httperr.Marshal(a)
	if err != nil {
		return nil, err
	}
	return processBody(pred), nil
}

// processBody is /process's 200 body around a model prediction.
func processBody(prediction []byte) []byte {
	out := make([]byte, 0, len(prediction)+64)
	out = append(out, `{"status":"Input logged successfully","model_prediction":`...)
	out = append(out, prediction...)
	return append(out, '}')
}
