"""warren_model: serve a Python model with warren's exec backend.

Standard library only: copy this file next to your serve.py (or put it on
PYTHONPATH) and write two functions.

    import warren_model as wm

    def load(model_dir):
        # read weights from model_dir; return the model's metadata
        return wm.Metadata(
            inputs=[wm.Spec("input", "FP32", [-1, 64])],
            outputs=[wm.Spec("label", "INT64", [-1])],
            max_batch_size=32,       # requests per predict() call; 0: no limit
            platform="python/sklearn")

    def predict(batch):
        # batch: a list of wm.Request; return one item per request, in order:
        # a dict {output name: wm.Tensor}, or an exception for that request alone
        # (wm.BadInput: the caller gets a 400)
        return [{"label": wm.Tensor("label", "INT64", [1], [3])} for r in batch]

    if __name__ == "__main__":
        wm.serve(load, predict)

The worker starts the script with the model's directory as its working
directory and talks to it over two inherited pipes (fd 3: requests, fd 4:
answers), so print() and logging (stdout, stderr) never corrupt the protocol:
both go to the worker's log. Frames are a 4-byte big-endian length and a JSON
object; see docs/exec-backend.md for the protocol.

An exception in load() is reported to the worker (which retries with backoff);
one in predict() fails the whole batch; a per-request exception fails only that
request. The worker enforces each batch's deadline: a predict() that takes too
long gets the process killed and restarted. Request.deadline (time.monotonic()
seconds, or None) lets predict() give up early.
"""

import json
import os
import signal
import struct
import sys
import time
import traceback

__all__ = ["Spec", "Metadata", "Tensor", "Request", "BadInput", "serve"]

MAX_FRAME = 64 << 20


class BadInput(Exception):
    """A request the model cannot handle: the caller gets a 400 with the message."""


class Spec:
    """One input or output: name, v2 datatype, shape (-1: any size)."""

    def __init__(self, name, datatype, shape):
        self.name, self.datatype, self.shape = name, datatype, list(shape)

    def to_json(self):
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


class Metadata:
    """What load() returns: inputs, outputs (lists of Spec), max_batch_size, platform."""

    def __init__(self, inputs, outputs, max_batch_size=0, platform="python"):
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.max_batch_size, self.platform = max_batch_size, platform


class Tensor:
    """A tensor: name, v2 datatype, shape and flat row-major data (a list)."""

    def __init__(self, name, datatype, shape, data, parameters=None):
        self.name, self.datatype = name, datatype
        self.shape, self.data = list(shape), data
        self.parameters = parameters

    def rows(self):
        """The data as a list of rows along the first dimension (for 2-d inputs)."""
        if len(self.shape) < 2:
            return [self.data]
        width = 1
        for d in self.shape[1:]:
            width *= d
        return [self.data[i:i + width] for i in range(0, len(self.data), width)]

    def to_json(self):
        t = {"name": self.name, "datatype": self.datatype, "shape": self.shape, "data": list(self.data)}
        if self.parameters:
            t["parameters"] = self.parameters
        return t


class Request:
    """One inference request: id, inputs (dict name -> Tensor), outputs (names
    wanted; empty: all), parameters (dict), deadline (time.monotonic() seconds
    or None)."""

    def __init__(self, obj, deadline):
        self.id = obj.get("id", "")
        self.inputs = {}
        for t in obj.get("inputs", []):
            self.inputs[t["name"]] = Tensor(t["name"], t["datatype"], t["shape"], _flatten(t["data"]), t.get("parameters"))
        self.outputs = [o["name"] for o in obj.get("outputs", [])]
        self.parameters = obj.get("parameters") or {}
        self.deadline = deadline


def _flatten(data):
    if not data or not isinstance(data[0], list):
        return data
    out = []
    stack = [data]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(reversed(x))
        else:
            out.append(x)
    return out


def _read_exact(f, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(f):
    hdr = _read_exact(f, 4)
    if hdr is None:
        return None
    (n,) = struct.unpack(">I", hdr)
    if n > MAX_FRAME:
        raise ValueError("a frame of %d bytes from the worker, more than %d" % (n, MAX_FRAME))
    body = _read_exact(f, n)
    if body is None:
        return None
    return json.loads(body)


def _write_frame(f, obj):
    body = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()
    f.write(struct.pack(">I", len(body)) + body)
    f.flush()


def _metadata_json(md):
    if isinstance(md, dict):
        md = Metadata(**md)
    spec = lambda s: s.to_json() if isinstance(s, Spec) else dict(s)
    return {"type": "ready", "platform": md.platform, "max_batch_size": int(md.max_batch_size),
            "inputs": [spec(s) for s in md.inputs], "outputs": [spec(s) for s in md.outputs]}


def _tensor_json(name, t):
    if isinstance(t, Tensor):
        return t.to_json()
    d = dict(t)
    d.setdefault("name", name)
    return d


def _result(req, item):
    if isinstance(item, BadInput):
        return {"id": req.id, "status": "bad_input", "error": str(item)}
    if isinstance(item, BaseException):
        return {"id": req.id, "status": "error", "error": "%s: %s" % (type(item).__name__, item)}
    if isinstance(item, dict):
        outs = [_tensor_json(k, v) for k, v in item.items()]
    else:
        outs = [_tensor_json(None, v) for v in item]
    if req.outputs:
        outs = [o for o in outs if o["name"] in req.outputs]
    res = {"id": req.id, "status": "ok", "outputs": outs}
    try:
        json.dumps(res, allow_nan=False)
    except (TypeError, ValueError) as e:
        return {"id": req.id, "status": "error", "error": "the output cannot be sent as JSON: %s" % e}
    return res


def serve(load, predict):
    """Run the exec protocol until the worker closes the pipe or sends SIGTERM."""
    fd_in = int(os.environ.get("WARREN_FD_IN", "3"))
    fd_out = int(os.environ.get("WARREN_FD_OUT", "4"))
    try:
        rd = os.fdopen(fd_in, "rb", buffering=0)
        wr = os.fdopen(fd_out, "wb")
    except OSError as e:
        sys.exit("warren_model: fds %d/%d are not open (%s): run this script as a warren exec model" % (fd_in, fd_out, e))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    msg = _read_frame(rd)
    if msg is None:
        return
    if msg.get("type") != "load":
        sys.exit("warren_model: the first frame is %r, want load" % msg.get("type"))
    try:
        md = load(msg.get("model_dir", "."))
        ready = _metadata_json(md)
    except Exception as e:
        traceback.print_exc()
        _write_frame(wr, {"type": "load_error", "error": "%s: %s" % (type(e).__name__, e)})
        sys.exit(1)
    _write_frame(wr, ready)

    while True:
        msg = _read_frame(rd)
        if msg is None:
            return
        kind, seq = msg.get("type"), msg.get("seq", 0)
        if kind != "infer":
            _write_frame(wr, {"type": "error", "seq": seq, "error": "unknown frame type %r" % kind})
            continue
        ms = msg.get("deadline_ms") or 0
        deadline = time.monotonic() + ms / 1000.0 if ms > 0 else None
        try:
            batch = [Request(r, deadline) for r in msg.get("batch", [])]
            out = list(predict(batch))
            if len(out) != len(batch):
                raise RuntimeError("predict returned %d items for a batch of %d" % (len(out), len(batch)))
            results = [_result(r, o) for r, o in zip(batch, out)]
        except Exception as e:
            traceback.print_exc()
            _write_frame(wr, {"type": "error", "seq": seq, "error": "%s: %s" % (type(e).__name__, e)})
            continue
        _write_frame(wr, {"type": "result", "seq": seq, "results": results})
