"""A test child for package execmodel: y = 2*x, with faults on demand.

Per request, parameters["mode"]: crash (exit mid-batch), hang, garbage (a bad
frame on fd 4), item_error, bad_input, batch_error, noise (stdout and stderr
chatter, then the answer), sleep (parameters["ms"]).
At load, environment: EXIT_AT_LOAD=1 (exit before answering load),
FAIL_LOAD=1 (load raises), EXIT_AFTER_READY_MS (exit that long after ready),
MAX_BATCH (default 0), START_LOG (a file: one line per start), PID_DIR (write
the pid there).
"""
import os
import sys
import threading
import time

import warren_model as wm

if os.environ.get("START_LOG"):
    with open(os.environ["START_LOG"], "a") as f:
        f.write("%f\n" % time.time())
if os.environ.get("PID_DIR"):
    with open(os.path.join(os.environ["PID_DIR"], "%d.pid" % os.getpid()), "w") as f:
        f.write(str(os.getpid()))


def load(model_dir):
    print("loading from", model_dir, "- stdout noise at load", flush=True)
    if os.environ.get("EXIT_AT_LOAD"):
        print("exiting at load on purpose", file=sys.stderr, flush=True)
        os._exit(2)
    if os.environ.get("FAIL_LOAD"):
        raise FileNotFoundError("weights.bin is missing")
    ms = int(os.environ.get("EXIT_AFTER_READY_MS", "0"))
    if ms:
        threading.Timer(ms / 1000.0, lambda: os._exit(5)).start()
    return wm.Metadata(inputs=[wm.Spec("x", "FP32", [-1])], outputs=[wm.Spec("y", "FP32", [-1]), wm.Spec("n", "INT64", [1])],
                       max_batch_size=int(os.environ.get("MAX_BATCH", "0")), platform="python/test")


def predict(batch):
    out = []
    for r in batch:
        mode = r.parameters.get("mode", "")
        if mode == "crash":
            print("crashing on purpose", file=sys.stderr, flush=True)
            os._exit(3)
        if mode == "hang":
            time.sleep(3600)
        if mode == "garbage":
            os.write(4, b"\xff\xff\xff\xffnot a frame")
            time.sleep(3600)
        if mode == "batch_error":
            raise RuntimeError("the whole batch failed on purpose")
        if mode == "sleep":
            time.sleep(float(r.parameters.get("ms", 0)) / 1000.0)
        if mode == "noise":
            for i in range(100):
                print("noise %d \x00\xff" % i)
                print("more noise", i, file=sys.stderr)
            sys.stdout.flush()
        if mode == "item_error":
            out.append(ValueError("item failed on purpose"))
            continue
        if mode == "bad_input":
            out.append(wm.BadInput("x must be positive"))
            continue
        x = r.inputs["x"]
        out.append({"y": wm.Tensor("y", "FP32", x.shape, [2 * v for v in x.data]),
                    "n": wm.Tensor("n", "INT64", [1], [len(batch)])})
    return out


if __name__ == "__main__":
    wm.serve(load, predict)
