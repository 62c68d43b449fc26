#!/usr/bin/env python3
"""A small, real model server for the httpmodel tests.

It speaks the two protocols warren's http backend speaks:

* the seed lab's Service B: GET /health, POST /predict {"input": str} ->
  {"prediction": {"class", "confidence", "input_length"}, "message"}. The class
  and confidence come from a hash of the input, so answers are deterministic;
  otherwise the shapes, the 422 for a missing "input" (FastAPI's default) and
  len() counting code points are the lab's. POST /strict/predict is a stricter
  Service B (input at most 64 characters, else 422), and POST /broken/predict?fault=
  answers 200 with something that is not the lab's answer.
* the Open Inference Protocol (v2) REST API: GET /v2, /v2/health/{live,ready},
  GET /v2/models/{name}[/versions/{v}][/ready] and POST .../infer for a few tiny
  models, some of them faulty on purpose (see MODELS). Unknown models are 404
  {"error": ...}; a request that does not fit the model is 400 {"error": ...}.

GET /testing/peak/{group} reports the most "slow" requests of a group (the
request parameter "group") that were ever in flight at once.

Run: /usr/bin/python3 server.py --port 8001   (FastAPI and uvicorn, stdlib otherwise)
"""

import argparse
import asyncio
import hashlib

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, constr

CLASSES = ["cat", "dog", "bird", "fish", "rabbit"]

app = FastAPI(title="warren httpmodel test server")


# --- the seed lab's Service B -------------------------------------------------


class PredictIn(BaseModel):
    input: str


class StrictIn(BaseModel):
    input: constr(max_length=64)


def predict(text):
    """The lab's answer for text, deterministic: class and confidence from a hash."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    cls = CLASSES[digest[0] % len(CLASSES)]
    confidence = round(0.7 + int.from_bytes(digest[1:3], "big") / 65535 * 0.29, 2)
    return {
        "prediction": {"class": cls, "confidence": confidence, "input_length": len(text)},
        "message": f"Predicted class: {cls} with {confidence * 100:.1f}% confidence",
    }


@app.get("/")
async def root():
    return {"service": "Service B - ML Prediction", "status": "running"}


@app.get("/health")
async def health():
    return {"service": "Service B", "status": "healthy"}


@app.post("/predict")
async def predict_lab(body: PredictIn):
    return predict(body.input)


@app.post("/strict/predict")
async def predict_strict(body: StrictIn):
    return predict(body.input)


@app.post("/broken/predict")
async def predict_broken(body: PredictIn, fault: str = "missing"):
    answer = predict(body.input)
    if fault == "missing":
        del answer["prediction"]["confidence"]
        return answer
    if fault == "type":
        answer["prediction"]["input_length"] = "many"
        return answer
    if fault == "text":
        return PlainTextResponse("<html><body>Service B is having a bad day</body></html>")
    if fault == "big":
        answer["message"] = "x" * 100_000
        return answer
    return JSONResponse({"detail": f"unknown fault {fault!r}"}, status_code=400)


# --- Open Inference Protocol (v2) ---------------------------------------------


def spec(name, datatype, shape):
    return {"name": name, "datatype": datatype, "shape": shape}


FP32_IN, FP32_OUT = [spec("x", "FP32", [-1])], [spec("y", "FP32", [-1])]

# name -> (inputs, outputs)
MODELS = {
    # y = 2x, row by row; sum = the sum of each doubled row. Answers nested data.
    "double": ([spec("x", "FP32", [-1, 2])], [spec("y", "FP32", [-1, 2]), spec("sum", "FP64", [-1])]),
    # text = text
    "echo": ([spec("text", "BYTES", [-1])], [spec("text", "BYTES", [-1])]),
    # y = x after parameters.sleep_ms milliseconds
    "slow": (FP32_IN, FP32_OUT),
    # always 500
    "fail": (FP32_IN, FP32_OUT),
    # y = x, but 500 when an element is 13 (a model that fails on some inputs only)
    "unlucky": (FP32_IN, FP32_OUT),
    # y = x, but 400 for a negative element
    "picky": ([spec("x", "INT64", [-1])], [spec("y", "INT64", [-1])]),
    # 200 with a body that is not JSON
    "garbage": (FP32_IN, FP32_OUT),
    # 200 with a wrong answer; parameters.fault: shape (default), missing, datatype, extra
    "wrongshape": (FP32_IN, FP32_OUT),
    # metadata without tensors (as MLServer's when model-settings.json declares none);
    # infer echoes every input
    "bare": ([], []),
}
VERSIONS = ["1"]

INFLIGHT = {}
PEAK = {}


class V2Error(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@app.exception_handler(V2Error)
async def v2_error(request, exc):
    return JSONResponse({"error": exc.message}, status_code=exc.status)


def lookup(name, version):
    if name not in MODELS:
        raise V2Error(404, f"model '{name}' is not found")
    if version is not None and version not in VERSIONS:
        raise V2Error(404, f"model '{name}' has no version '{version}'")
    return MODELS[name]


@app.get("/v2")
async def server_metadata():
    return {"name": "warren-httpmodel-testdata", "version": "1", "extensions": []}


@app.get("/v2/health/live")
async def live():
    return {"live": True}


@app.get("/v2/health/ready")
async def ready():
    return {"ready": True}


def model_metadata(name, version):
    inputs, outputs = lookup(name, version)
    return {"name": name, "versions": VERSIONS, "platform": "python_fastapi", "inputs": inputs, "outputs": outputs}


@app.get("/v2/models/{name}")
async def metadata_latest(name: str):
    return model_metadata(name, None)


@app.get("/v2/models/{name}/versions/{version}")
async def metadata_version(name: str, version: str):
    return model_metadata(name, version)


@app.get("/v2/models/{name}/ready")
async def model_ready(name: str):
    lookup(name, None)
    return {"name": name, "ready": True}


@app.post("/v2/models/{name}/infer")
async def infer_latest(name: str, request: Request):
    return await infer(name, None, request)


@app.post("/v2/models/{name}/versions/{version}/infer")
async def infer_version(name: str, version: str, request: Request):
    return await infer(name, version, request)


def flatten(data):
    if isinstance(data, list):
        out = []
        for d in data:
            out.extend(flatten(d))
        return out
    return [data]


def count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def read_inputs(body, specs):
    """The request's inputs as {name: (shape, flat data, datatype)}, checked against specs
    (any inputs when there are none)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise V2Error(400, "'inputs' is required and must be an array")
    by_name = {s["name"]: s for s in specs}
    tensors = {}
    for t in body["inputs"]:
        name = t.get("name")
        s = by_name.get(name) if specs else {"name": name, "datatype": t.get("datatype"), "shape": [-1] * len(t.get("shape") or [])}
        if s is None:
            raise V2Error(400, f"unexpected input '{name}'")
        if t.get("datatype") != s["datatype"]:
            raise V2Error(400, f"input '{name}': datatype {t.get('datatype')}, expected {s['datatype']}")
        shape = t.get("shape")
        if not isinstance(shape, list) or len(shape) != len(s["shape"]):
            raise V2Error(400, f"input '{name}': shape {shape}, expected {s['shape']}")
        for got, want in zip(shape, s["shape"]):
            if want >= 0 and got != want:
                raise V2Error(400, f"input '{name}': shape {shape}, expected {s['shape']}")
        data = flatten(t.get("data"))
        if len(data) != count(shape):
            raise V2Error(400, f"input '{name}': {len(data)} elements for shape {shape}")
        tensors[name] = (shape, data, t.get("datatype"))
    for s in specs:
        if s["name"] not in tensors:
            raise V2Error(400, f"missing input '{s['name']}'")
    return tensors


async def infer(name, version, request):
    inputs, outputs = lookup(name, version)
    try:
        body = await request.json()
    except ValueError:
        raise V2Error(400, "the request body is not JSON")
    tensors = read_inputs(body, inputs)
    params = body.get("parameters") or {}
    result = await COMPUTE[name](tensors, params)
    if not isinstance(result, list):
        return result  # a fault model's own response
    wanted = [o.get("name") for o in body.get("outputs") or []]
    if wanted:
        by_name = {o["name"]: o for o in result}
        for w in wanted:
            if w not in by_name:
                raise V2Error(400, f"unknown output '{w}'")
        result = [by_name[w] for w in wanted]
    answer = {"model_name": name, "model_version": version or VERSIONS[-1], "outputs": result}
    if "id" in body:
        answer["id"] = body["id"]
    return JSONResponse(answer)


async def compute_double(tensors, params):
    shape, x, _ = tensors["x"]
    rows = [[2 * x[i], 2 * x[i + 1]] for i in range(0, len(x), 2)]
    return [
        {"name": "y", "datatype": "FP32", "shape": shape, "data": rows},
        {"name": "sum", "datatype": "FP64", "shape": [shape[0]], "data": [a + b for a, b in rows]},
    ]


async def compute_echo(tensors, params):
    shape, text, _ = tensors["text"]
    return [{"name": "text", "datatype": "BYTES", "shape": shape, "data": text}]


async def compute_slow(tensors, params):
    group = str(params.get("group", ""))
    INFLIGHT[group] = INFLIGHT.get(group, 0) + 1
    PEAK[group] = max(PEAK.get(group, 0), INFLIGHT[group])
    try:
        await asyncio.sleep(float(params.get("sleep_ms", 0)) / 1000)
    finally:
        INFLIGHT[group] -= 1
    shape, x, _ = tensors["x"]
    return [{"name": "y", "datatype": "FP32", "shape": shape, "data": x}]


async def compute_fail(tensors, params):
    return JSONResponse({"error": "model 'fail' crashed: simulated failure"}, status_code=500)


async def compute_unlucky(tensors, params):
    shape, x, _ = tensors["x"]
    if 13 in x:
        return JSONResponse({"error": "model 'unlucky' crashed on 13"}, status_code=500)
    return [{"name": "y", "datatype": "FP32", "shape": shape, "data": x}]


async def compute_picky(tensors, params):
    shape, x, _ = tensors["x"]
    for v in x:
        if v < 0:
            raise V2Error(400, f"picky: negative values are not allowed (got {v})")
    return [{"name": "y", "datatype": "INT64", "shape": shape, "data": x}]


async def compute_garbage(tensors, params):
    return PlainTextResponse("<html><body>this is not JSON</body></html>")


async def compute_wrongshape(tensors, params):
    shape, x, _ = tensors["x"]
    fault = params.get("fault", "shape")
    if fault == "missing":
        return JSONResponse({"model_name": "wrongshape", "outputs": []})
    if fault == "datatype":
        y = {"name": "y", "datatype": "FP64", "shape": shape, "data": x}
    elif fault == "extra":  # the declared output twice
        y = {"name": "y", "datatype": "FP32", "shape": shape, "data": x}
        return JSONResponse({"model_name": "wrongshape", "outputs": [y, y]})
    else:  # one element more in the shape than in the data
        y = {"name": "y", "datatype": "FP32", "shape": [len(x) + 1], "data": x}
    return JSONResponse({"model_name": "wrongshape", "outputs": [y]})


async def compute_bare(tensors, params):
    return [{"name": name, "datatype": dt, "shape": shape, "data": data} for name, (shape, data, dt) in tensors.items()]


COMPUTE = {
    "unlucky": compute_unlucky,
    "double": compute_double,
    "echo": compute_echo,
    "slow": compute_slow,
    "fail": compute_fail,
    "picky": compute_picky,
    "garbage": compute_garbage,
    "wrongshape": compute_wrongshape,
    "bare": compute_bare,
}


@app.get("/testing/peak/{group}")
async def peak(group: str):
    return {"peak": PEAK.get(group, 0)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    # A keep-alive timeout longer than uvicorn's 5 s default, so a slow test run
    # does not see idle connections closed between calls.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_keep_alive=30)


if __name__ == "__main__":
    main()
