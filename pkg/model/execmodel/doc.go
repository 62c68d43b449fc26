// Package execmodel is the exec backend: a model served by child processes that
// the worker starts and supervises (a Python script, or any program), speaking a
// small framed protocol over a pipe pair.
//
// # Processes
//
// [New] starts Config.Instances children with Config.Command (argv, no shell) in
// Config.WorkDir, with a minimal environment (PATH, HOME, LANG, LC_ALL, TMPDIR,
// TZ, PYTHONPATH of the worker, then Config.Env; never the worker's other
// variables, which hold its broker credentials). Each child's stdin is
// /dev/null; its stdout and stderr go to the worker's log line by line, with the
// model and the instance, so a stray print() is a log line and nothing more.
// Requests go down a pipe the child inherits as fd 3, answers come up a pipe it
// inherits as fd 4 (the environment names them: WARREN_FD_IN=3, WARREN_FD_OUT=4).
//
// A supervisor per instance restarts a child that exits, crashes or is killed
// (after a missed deadline or a broken frame) with exponential backoff
// (Config.RestartBackoff doubling up to Config.RestartBackoffMax). [Model.Healthy]
// reports an error while no child is up and stable: a child that failed
// Config.MaxFailures times in a row, each time within Config.StableAfter of its
// start, counts as down until it has stayed up that long. [Model.Close] sends
// SIGTERM to each child's process group, SIGKILL after Config.StopTimeout, and
// reaps them. On Linux the children also get SIGKILL when the worker dies.
//
// # Protocol
//
// Both directions carry frames: a 4-byte big-endian length, then that many bytes
// of one JSON object with a "type". A frame longer than Config.MaxFrameBytes
// (default 64 MiB) is a protocol error. The conversation of one child:
//
//	worker → child  {"type":"load","model_dir":"/models/digits/1","name":"digits","version":"1","instance":0}
//	child → worker  {"type":"ready","platform":"python/sklearn","max_batch_size":32,
//	                 "inputs":[{"name":"input","datatype":"FP32","shape":[-1,64]}],
//	                 "outputs":[{"name":"label","datatype":"INT64","shape":[-1]}]}
//	             or {"type":"load_error","error":"No such file: weights.pkl"}
//	worker → child  {"type":"infer","seq":1,"deadline_ms":950,"batch":[
//	                   {"id":"r1","inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[…]}],
//	                    "outputs":[{"name":"label"}],"parameters":{…}}, …]}
//	child → worker  {"type":"result","seq":1,"results":[
//	                   {"id":"r1","status":"ok","outputs":[{"name":"label","datatype":"INT64","shape":[1],"data":[3]}]},
//	                   {"id":"r2","status":"bad_input","error":"…"}, …]}
//	             or {"type":"error","seq":1,"error":"…"}   (the whole batch failed)
//
// The batch items are Open Inference Protocol (v2) inference requests, tensors
// with flat row-major data; results carry v2 output tensors. A result's status is
// ok, bad_input (the caller gets a 400), error (a model error) or unavailable
// (502, a job is retried). "deadline_ms" is the time left for the batch (0: no
// deadline); the worker enforces it: a child that has not answered by then is
// killed and restarted, and the callers get the context's error (a 504). At
// most max_batch_size items go in one frame (0: no limit). One frame is in
// flight per child at a time; the worker dispatches to whichever child is free.
//
// python/warren_model.py implements the child's side for Python with the
// standard library only: the user writes load(model_dir) and predict(batch).
// docs/exec-backend.md describes both sides.
package execmodel
