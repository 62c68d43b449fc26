"""The digits model (8x8 images -> 0..9) served with warren's exec backend.

load() trains scikit-learn's MLPClassifier on the digits data set Debian's
python3-sklearn bundles, exactly as scripts/models/train_digits.py does (same
split, seed and hyper-parameters), so its answers match the onnx backend's
models/digits/1/model.onnx. A real model would load weights from model_dir.

Inputs and outputs are the onnx model's, plus the predicted label:

    input          FP32  [-1, 64]   raw pixel counts 0..16, row-major
    probabilities  FP32  [-1, 10]   class probabilities
    label          INT64 [-1]       the most probable class
"""
import os
import warnings

import warren_model as wm

SEED, TEST_SIZE, HIDDEN = 0, 0.25, 48
state = {}


def load(model_dir):
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=TEST_SIZE, stratify=y, random_state=SEED)
    scaler = StandardScaler().fit(X_train)
    mlp = MLPClassifier(hidden_layer_sizes=(HIDDEN,), activation="relu", solver="adam",
                        alpha=1.0, max_iter=400, random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(scaler.transform(X_train), y_train)
    state.update(np=np, scaler=scaler, mlp=mlp)
    print("digits: trained on %d images (pid %d)" % (len(y_train), os.getpid()))
    return wm.Metadata(
        inputs=[wm.Spec("input", "FP32", [-1, 64])],
        outputs=[wm.Spec("probabilities", "FP32", [-1, 10]), wm.Spec("label", "INT64", [-1])],
        max_batch_size=32,
        platform="python/sklearn")


def predict(batch):
    np, scaler, mlp = state["np"], state["scaler"], state["mlp"]
    # One sklearn call for the whole batch: stack every request's rows.
    xs = [np.asarray(r.inputs["input"].data, dtype=np.float64).reshape(-1, 64) for r in batch]
    proba = mlp.predict_proba(scaler.transform(np.vstack(xs)))
    out, at = [], 0
    for x in xs:
        p = proba[at:at + len(x)]
        at += len(x)
        out.append({
            "probabilities": wm.Tensor("probabilities", "FP32", [len(x), 10], p.astype(np.float32).ravel().tolist()),
            "label": wm.Tensor("label", "INT64", [len(x)], p.argmax(axis=1).tolist()),
        })
    return out


if __name__ == "__main__":
    wm.serve(load, predict)
