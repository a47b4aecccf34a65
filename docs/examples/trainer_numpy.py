#!/usr/bin/env python3
"""A trainer for `fl-secure client --train-cmd`, with numpy only.

    fl-secure client --config client.conf \
        --train-cmd 'python3 trainer_numpy.py --data local.csv --label malignant'

It follows the contract of docs/TRAINER.md: it reads the global model
($FL_SECURE_MODEL, safetensors with named tensors) and its manifest
($FL_SECURE_LAYOUT: layout, standardization, round, level, clip, records),
trains on the hospital's CSV file, and writes the update to
$FL_SECURE_UPDATE as safetensors with the same named tensors.

- client level: one epoch of mini-batch SGD from the global model; the
  update is trained - global (fl-secure clips it and adds the noise);
- record level: the sum over every record of its loss gradient at the
  global model, each record's gradient clipped to L2 norm `clip` first
  (Abadi et al., CCS 2016, Alg. 1), and "records" in the file's metadata.

Models: logistic, linear, softmax and mlp (one tanh hidden layer), with
the losses fl-secure uses (cross-entropy; squared error / 2 for linear).
"""

import argparse
import csv
import json
import os
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    (n,) = struct.unpack("<Q", b[:8])
    head = json.loads(b[8 : 8 + n])
    meta = head.pop("__metadata__", {})
    out = {}
    for name, h in head.items():
        dtype = {"F64": "<f8", "F32": "<f4"}[h["dtype"]]
        start, end = h["data_offsets"]
        a = np.frombuffer(b[8 + n + start : 8 + n + end], dtype=dtype)
        out[name] = a.reshape(h["shape"]).astype(np.float64)
    return out, meta


def write_safetensors(path, tensors, meta):
    head, blobs, off = {}, [], 0
    for name in sorted(tensors):
        blob = np.ascontiguousarray(tensors[name], dtype="<f8").tobytes()
        head[name] = {"dtype": "F64", "shape": list(np.shape(tensors[name])), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    if meta:
        head["__metadata__"] = meta
    hj = json.dumps(head).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))


def load_csv(path, label):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head = [h.strip() for h in rows[0]]
    li = head.index(label)
    data = np.array([[float(v) for v in r] for r in rows[1:] if r], dtype=np.float64)
    return np.delete(data, li, axis=1), data[:, li]


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def output_grad(z, y, kind):
    """d loss / d z for each record: z is (n, outputs)."""
    if kind == "regression":
        return z - y[:, None]
    if kind == "binary":
        return sigmoid(z) - y[:, None]
    onehot = np.zeros_like(z)
    onehot[np.arange(len(y)), y.astype(int)] = 1
    return softmax(z) - onehot


def per_record_grads(man, p, x, y):
    """Each record's gradient, as {tensor name: array (n, *shape)}."""
    model = man["model"]
    if model == "mlp":
        h = np.tanh(x @ p["hidden.weight"].T + p["hidden.bias"])
        z = h @ p["out.weight"].T + p["out.bias"]
        dz = output_grad(z, y, "binary" if man["outputs"] == 1 else "multiclass")
        dh = (dz @ p["out.weight"]) * (1 - h * h)
        return {
            "out.weight": dz[:, :, None] * h[:, None, :],
            "out.bias": dz,
            "hidden.weight": dh[:, :, None] * x[:, None, :],
            "hidden.bias": dh,
        }
    z = x @ p["weight"].T + p["bias"]
    kind = {"logistic": "binary", "linear": "regression", "softmax": "multiclass"}[model]
    dz = output_grad(z, y, kind)
    return {"weight": dz[:, :, None] * x[:, None, :], "bias": dz}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the hospital's CSV file")
    ap.add_argument("--label", required=True, help="its label column")
    ap.add_argument("--learning-rate", type=float, default=0.1, help="local learning rate (client level)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    with open(os.environ["FL_SECURE_LAYOUT"]) as f:
        man = json.load(f)
    if man.get("format") != "fl-secure-trainer/1":
        sys.exit("unknown manifest format %r" % man.get("format"))
    params, _ = read_safetensors(os.environ["FL_SECURE_MODEL"])
    for t in man["tensors"]:
        if list(params[t["name"]].shape) != t["shape"]:
            sys.exit("tensor %s has shape %s, the layout %s" % (t["name"], params[t["name"]].shape, t["shape"]))

    x, y = load_csv(args.data, args.label)
    if x.shape[1] != man["features"]:
        sys.exit("%s has %d features; the model takes %d" % (args.data, x.shape[1], man["features"]))
    x = (x - np.array(man["mean"])) / np.array(man["scale"])
    if "label_scale" in man:
        y = (y - man["label_mean"]) / man["label_scale"]

    meta = {}
    if man["level"] == "record":
        if int(os.environ["FL_SECURE_RECORDS"]) != len(y):
            sys.exit("told to use %s records; %s has %d" % (os.environ["FL_SECURE_RECORDS"], args.data, len(y)))
        with np.errstate(over="ignore", invalid="ignore"):
            g = per_record_grads(man, params, x, y)
            # A record whose gradient is not finite (an overflow at an
            # extreme model or standardization) contributes nothing: the
            # trainer must never fail because of one record (docs/TRAINER.md).
            ok = np.ones(len(y), dtype=bool)
            for a in g.values():
                ok &= np.isfinite(a.reshape(len(y), -1)).all(axis=1)
            g = {k: np.where(ok.reshape((-1,) + (1,) * (a.ndim - 1)), a, 0.0) for k, a in g.items()}
            # Each record's norm, scaled by its largest entry so that its
            # square cannot overflow.
            big = np.zeros(len(y))
            for a in g.values():
                big = np.maximum(big, np.abs(a.reshape(len(y), -1)).max(axis=1))
            big = np.where(big > 0, big, 1.0)
            norm = big * np.sqrt(sum(((a.reshape(len(y), -1) / big[:, None]) ** 2).sum(axis=1) for a in g.values()))
            factor = np.minimum(1.0, man["clip"] / np.maximum(norm, 1e-300))
            update = {k: np.tensordot(factor, a, axes=1) for k, a in g.items()}
        meta["records"] = str(len(y))
    else:
        w = {k: v.copy() for k, v in params.items()}
        order = np.random.default_rng(man["round"]).permutation(len(y))
        for s in range(0, len(y), args.batch_size):
            b = order[s : s + args.batch_size]
            for k, a in per_record_grads(man, w, x[b], y[b]).items():
                w[k] -= args.learning_rate * a.mean(axis=0)
        update = {k: w[k] - params[k] for k in params}
    write_safetensors(os.environ["FL_SECURE_UPDATE"], update, meta)
    print("round %d: %s-level update over %d records" % (man["round"], man["level"], len(y)))


if __name__ == "__main__":
    main()
