#!/usr/bin/python3
"""Train warren's "digits" model and export it for the pure-Go onnx backend.

Run from anywhere (Debian's interpreter, not a virtualenv's):

    /usr/bin/python3 scripts/models/train_digits.py

It loads the 8x8 handwritten digits data set that Debian's python3-sklearn ships
(a copy of the UCI "Optical Recognition of Handwritten Digits" test set), splits
off a stratified held-out test set with a fixed seed, trains a one-hidden-layer
ReLU MLP on standardised pixels, folds the standardisation into the first layer's
weights, and writes by hand, with onnx.helper, an opset-13 graph that gonnx v1.1.0
can run:

    input [N,64] FP32 (raw pixels 0..16)
      -> Gemm(W1', b1') -> Relu -> Gemm(W2, b2) -> Softmax(axis=1)
      -> probabilities [N,10] FP32

Outputs, under models/digits/ (or --out DIR):

    1/model.onnx            the graph (float32 weights, a few KB)
    config.yaml             the model repository's config for it
    README.md               what it is, held-out accuracy, provenance, licence
    testdata/vectors.json   held-out inputs with sklearn's predict_proba and labels

Everything is deterministic: a re-run writes the same bytes.
"""

import os

# One BLAS thread, so that the floating-point sums (and so the bytes written) do
# not depend on the machine's core count. Must be set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import hashlib
import json
import sys
import warnings

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
except ImportError as e:  # pragma: no cover - environment check
    sys.exit(
        f"train_digits.py: {e}.\n"
        "It needs numpy, scikit-learn and onnx from Debian; install them with\n"
        "    apt-get install --no-install-recommends python3-numpy python3-sklearn python3-onnx\n"
        "and run it with /usr/bin/python3 (not a virtualenv's python)."
    )

SEED = 0
TEST_SIZE = 0.25
HIDDEN = 48
N_VECTORS = 32
OPSET = 13
# IR version 7 is the one that goes with opset 13 (ONNX 1.8); gonnx reads any.
IR_VERSION = 7

CONFIG_YAML = """\
backend: onnx
max_batch_size: 32      # accepted now; the batching work uses it
concurrency: 2          # requests this worker computes at once for this model
"""


def train(X_train, y_train):
    """Standardise, then fit the MLP. Returns (scaler, mlp)."""
    scaler = StandardScaler().fit(X_train)
    # A strong L2 penalty (alpha=1.0) keeps the logits small (within -7..13 on the
    # whole data set) at no cost in accuracy, so even gonnx's own
    # Softmax, which overflows on widely spread logits, runs it; see the README. It converges in about 370 of the 400 iterations allowed.
    mlp = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,),
        activation="relu",
        solver="adam",
        alpha=1.0,
        max_iter=400,
        random_state=SEED,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(scaler.transform(X_train), y_train)
    return scaler, mlp


def fold(scaler, mlp):
    """The first layer's weights and bias acting on raw pixels.

    The MLP sees z = (x - mean) / scale, so its first layer computes
    z @ W1 + b1 = x @ (W1 / scale[:, None]) + (b1 - (mean / scale) @ W1).
    """
    w1, w2 = mlp.coefs_
    b1, b2 = mlp.intercepts_
    w1f = w1 / scaler.scale_[:, None]
    b1f = b1 - (scaler.mean_ / scaler.scale_) @ w1
    return w1f, b1f, w2, b2


def export(w1, b1, w2, b2):
    """The opset-13 ONNX model, built by hand from gonnx-supported operators."""
    f32 = lambda a, name: numpy_helper.from_array(np.ascontiguousarray(a, dtype="<f4"), name)
    inits = [f32(w1, "W1"), f32(b1, "B1"), f32(w2, "W2"), f32(b2, "B2")]
    nodes = [
        helper.make_node("Gemm", ["input", "W1", "B1"], ["hidden_pre"], name="dense1"),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"], name="relu1"),
        helper.make_node("Gemm", ["hidden", "W2", "B2"], ["logits"], name="dense2"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
        doc_string="8x8 digit images (64 raw pixel counts 0..16, row-major) -> class probabilities for 0..9",
    )
    model = helper.make_model(
        graph,
        producer_name="warren scripts/models/train_digits.py",
        producer_version="1",
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        doc_string=f"MLPClassifier(hidden_layer_sizes=({HIDDEN},), relu) on sklearn's load_digits; scaling folded into dense1",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def forward32(x, w1, b1, w2, b2):
    """The exported graph's arithmetic in float32 numpy, to check the export."""
    x = x.astype(np.float32)
    h = np.maximum(x @ w1.astype(np.float32) + b1.astype(np.float32), 0)
    z = h @ w2.astype(np.float32) + b2.astype(np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True), z


def dump_vectors(doc):
    """JSON with one line per vector, so diffs stay readable. Floats are written
    with repr, which round-trips float64 exactly."""
    head = {k: v for k, v in doc.items() if k != "vectors"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v)},")
    lines.append(' "vectors": [')
    rows = ["  " + json.dumps(v) for v in doc["vectors"]]
    lines.append(",\n".join(rows))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def readme(acc, n_train, n_test, n_correct_vectors, size, digest, max_diff, logits):
    return f"""# digits — handwritten digit classifier (ONNX, pure-Go backend)

A small multi-layer perceptron that reads an 8×8 image of a handwritten digit and
returns the probability of each digit 0–9. It runs on warren's `onnx` backend
(pure Go, gonnx v1.1.0, no cgo). Generated by
[`scripts/models/train_digits.py`](../../scripts/models/train_digits.py); do not
edit the files here by hand.

| | |
|---|---|
| input | `input`, FP32, shape `[-1, 64]`: 64 raw pixel counts 0–16, row by row |
| output | `probabilities`, FP32, shape `[-1, 10]`: one row per image, summing to 1 |
| graph | `Gemm → Relu → Gemm → Softmax`, opset 13, IR version {IR_VERSION}, {HIDDEN} hidden units |
| file | `1/model.onnx`, {size} bytes, sha256 `{digest}` |
| training | scikit-learn 1.2.1 `MLPClassifier(hidden_layer_sizes=({HIDDEN},), activation="relu", alpha=1.0, random_state={SEED})` on standardised pixels; the standardisation is folded into the first layer, so clients send raw pixels |
| split | stratified, `test_size={TEST_SIZE}`, `random_state={SEED}`: {n_train} training images, {n_test} held out |
| **held-out accuracy** | **{acc:.4f}** ({round(acc * n_test)}/{n_test}) |

The predicted digit is the index of the largest probability (the graph has no
ArgMax: gonnx does not implement it).

## Files

- `1/model.onnx` — version 1 of the model.
- `config.yaml` — the model repository's settings (`backend: onnx`, batch size,
  concurrency).
- `testdata/vectors.json` — {N_VECTORS} held-out images (the first {N_VECTORS} of the
  test split) with their true labels, sklearn's predicted labels and sklearn's
  float64 `predict_proba` output; the Go tests check the backend against them
  (within 1e-5). sklearn gets {n_correct_vectors}/{N_VECTORS} of them right. The float32 graph
  differs from sklearn's float64 probabilities by at most {max_diff:.2e} on these
  vectors (numpy check at export time).

## Regenerate

```sh
/usr/bin/python3 scripts/models/train_digits.py
```

It needs Debian's `python3-numpy`, `python3-sklearn` (1.2.1) and `python3-onnx`
(1.12) — `apt-get install --no-install-recommends python3-sklearn python3-onnx` —
and no network. The run is deterministic (fixed seeds, one BLAS thread): it writes
the same bytes again, so `git diff` after a re-run shows nothing. A different
scikit-learn or numpy version may train slightly different weights; the tests then
still pass, because the vectors are regenerated with the model.

## Data set: provenance and licence

The data is scikit-learn's `load_digits()`, read from
`/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz` as shipped
by Debian's `python3-sklearn` 1.2.1 (1,797 images, 10 classes). scikit-learn's
description (`sklearn/datasets/descr/digits.rst`) says it is a copy of the test
set of the UCI "Optical Recognition of Handwritten Digits" data set:

> E. Alpaydin and C. Kaynak. *Optical Recognition of Handwritten Digits*.
> UCI Machine Learning Repository, 1998. https://doi.org/10.24432/C50P49
> (https://archive.ics.uci.edu/ml/datasets/Optical+Recognition+of+Handwritten+Digits)

Creator: E. Alpaydin (Boğaziçi University), July 1998; bitmaps extracted with
NIST's preprocessing programs (M. D. Garris et al., *NIST Form-Based Handprint
Recognition System*, NISTIR 5469, 1994).

Licences:

- Debian's `/usr/share/doc/python3-sklearn/copyright` puts all of scikit-learn,
  including its bundled data files, under BSD-3-Clause (© the scikit-learn
  developers); it does not list the data files separately.
- The UCI repository publishes this data set under Creative Commons Attribution
  4.0 (CC BY 4.0), which requires the attribution above. (Not re-checked offline
  when this was generated.)

What this repository redistributes: the trained weights in `1/model.onnx` (a
derived work) and, in `testdata/vectors.json`, {N_VECTORS} of the data set's images with
their labels. Keep this attribution with them.

## Caveats

- The data is small (1,797 images from 13 writers in the UCI test set) and 8×8;
  this model is a demonstration and a test fixture, not a production OCR model.
- gonnx's own Softmax (gorgonia's kernel) does not subtract each row's maximum
  and returns NaN once logits lie more than about 88 apart. warren's onnx backend
  uses its own Softmax, so this does not affect it; this model keeps its logits
  small anyway (between {logits[0]:.1f} and {logits[1]:.1f} over the whole data set), so
  plain gonnx runs it correctly too.
"""


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(root, "models", "digits"),
                    help="model directory to write (default: %(default)s)")
    args = ap.parse_args()

    X, y = load_digits(return_X_y=True)
    idx = np.arange(len(y))
    X_train, X_test, y_train, y_test, _, idx_test = train_test_split(
        X, y, idx, test_size=TEST_SIZE, stratify=y, random_state=SEED)

    scaler, mlp = train(X_train, y_train)
    acc = float((mlp.predict(scaler.transform(X_test)) == y_test).mean())

    w1, b1, w2, b2 = fold(scaler, mlp)
    model = export(w1, b1, w2, b2)

    # The export must compute what sklearn computes, in float32.
    proba = mlp.predict_proba(scaler.transform(X_test))
    p32, _ = forward32(X_test, w1, b1, w2, b2)
    max_diff = float(np.abs(p32 - proba).max())
    if max_diff > 1e-5:
        sys.exit(f"train_digits.py: float32 graph differs from sklearn by {max_diff:.3g} > 1e-5")
    _, z_all = forward32(X, w1, b1, w2, b2)
    logits = (float(z_all.min()), float(z_all.max()))

    out = args.out
    os.makedirs(os.path.join(out, "1"), exist_ok=True)
    os.makedirs(os.path.join(out, "testdata"), exist_ok=True)

    data = model.SerializeToString(deterministic=True)
    with open(os.path.join(out, "1", "model.onnx"), "wb") as f:
        f.write(data)

    vx, vy = X_test[:N_VECTORS], y_test[:N_VECTORS]
    vp = proba[:N_VECTORS]
    vpred = mlp.classes_[vp.argmax(axis=1)]
    vectors = {
        "description": "held-out digits images (first of the stratified test split), "
                       "sklearn MLPClassifier.predict_proba in float64, true and predicted labels; "
                       "data: UCI Optical Recognition of Handwritten Digits (Alpaydin & Kaynak, CC BY 4.0) "
                       "via scikit-learn load_digits",
        "model": "models/digits/1/model.onnx",
        "input": "input",
        "output": "probabilities",
        "classes": [int(c) for c in mlp.classes_],
        "vectors": [
            {
                "index": int(idx_test[i]),
                "label": int(vy[i]),
                "predicted": int(vpred[i]),
                "input": [int(v) for v in vx[i]],
                "probabilities": [float(p) for p in vp[i]],
            }
            for i in range(len(vy))
        ],
    }
    with open(os.path.join(out, "testdata", "vectors.json"), "w") as f:
        f.write(dump_vectors(vectors))

    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write(CONFIG_YAML)

    digest = hashlib.sha256(data).hexdigest()
    n_correct = int((vpred == vy).sum())
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(readme(acc, len(y_train), len(y_test), n_correct, len(data), digest, max_diff, logits))

    print(f"held-out accuracy: {acc:.4f} ({round(acc * len(y_test))}/{len(y_test)})")
    print(f"float32 graph vs sklearn predict_proba (test set): max abs diff {max_diff:.3g}")
    print(f"logits over all {len(y)} images: {logits[0]:.1f} .. {logits[1]:.1f}")
    print(f"wrote {out}/1/model.onnx ({len(data)} bytes, sha256 {digest})")
    print(f"wrote {out}/testdata/vectors.json ({len(vy)} vectors, sklearn right on {n_correct})")


if __name__ == "__main__":
    main()
