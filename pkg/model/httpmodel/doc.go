// Package httpmodel is warren's http backend: a model that already runs elsewhere,
// behind an HTTP endpoint, served through warren's queue. A [Model] implements
// [model.Predictor] by calling the remote server once per request (v2) or once per
// input string (seed).
//
// # Protocols
//
// "v2" is the Open Inference Protocol (the KServe v2 REST protocol, spoken by
// Triton, MLServer, KServe and TorchServe). Config.URL is the server's base URL
// (http://triton:8000); the model is Config.Model, optionally at Config.Version.
// [New] reads the model's metadata from GET {URL}/v2/models/{Model}[/versions/{Version}]
// unless Config.Inputs and Config.Outputs declare it. Each request of a batch is
// one POST {URL}/v2/models/{Model}[/versions/{Version}]/infer whose body is the
// request's tensors, parameters and output selection as JSON ([oip.EncodeRequest]);
// the answer's outputs must match the metadata (names, datatypes, ranks, fixed
// dimensions) and are returned in the order asked for.
//
// "seed" is the seed lab's Service B: Config.URL is its full predict URL
// (http://service-b:8001/predict). The model has the seed model's tensors
// ([model.SeedMetadata]): every string of the BYTES input "data" is one POST
// {"input": s}, and the lab's answer {"prediction":{"class","confidence",
// "input_length"},"message"} becomes the outputs class (BYTES), confidence (FP64),
// input_length (INT64) and message (BYTES), each shaped like the input. The result
// is interchangeable with the built-in seed backend's: [model.SeedOutput] reads it.
//
// # Errors
//
// Predict puts an item's failure in its [model.Response]'s Err and keeps the
// other items' answers; only the request context ending fails the whole batch.
// Errors are classified for errors.Is, so the worker can answer its caller:
//
//	what happened                                   error                         caller
//	------------------------------------------------------------------------------------
//	remote 4xx (400, 413, 422, …): input rejected   *StatusError, ErrBadInput     400
//	remote 401, 403, 404, 405: wrong URL, model     *StatusError (plain)          502
//	  or credentials (the operator's problem)
//	remote 408, 429, 503: busy or not ready         *StatusError, ErrUnavailable  502, job retried
//	remote 5xx (the others)                         *StatusError (plain)          502
//	a 2xx that is not a valid answer: not JSON,     plain error                   502
//	  wrong outputs, shapes or datatypes, a
//	  missing seed field, over MaxResponseBytes
//	refused, DNS failure, reset, TLS failure        wraps ErrUnavailable          502, job retried
//	Config.Timeout expired before the deadline      wraps ErrTimeout              504
//	the request context's deadline or cancel        ctx.Err() itself              (the worker's)
//
// A remote error's message ({"error": …} from v2 servers, {"detail": …} from
// FastAPI, {"message": …}, or the body's text) is trimmed and bounded, and travels
// in [StatusError]. An ill-formed answer's error quotes a bounded snippet of it.
// Input that does not fit the metadata, or that the remote protocol cannot carry
// (NaN in JSON, a seed string that is not UTF-8), is a [model.InputError], found
// before anything is sent.
//
// # Deadlines
//
// Every call carries the request context, so its deadline is the call's deadline;
// Config.Timeout, when set, bounds each call further (the earlier of the two wins).
// Connecting, sending and reading the answer all stop at that deadline: a call
// never outlives it. New's metadata fetch is bounded the same way by New's context
// and Config.Timeout.
//
// # Pooling
//
// Each Model owns one http.Transport (unless Config.Client is given) that keeps at
// most Config.MaxConns connections to the server, open or idle, and reuses them
// across calls (keep-alive). A batch's calls run concurrently, at most MaxConns at
// once. Bodies are always read to the end (up to a bound) and closed, so
// connections go back to the pool; Close closes the idle ones.
package httpmodel
