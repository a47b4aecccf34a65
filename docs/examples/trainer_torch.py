#!/usr/bin/env python3
"""A trainer for `fl-secure client --train-cmd`, with PyTorch.

    pip install torch safetensors
    fl-secure client --config client.conf \
        --train-cmd 'python3 trainer_torch.py --data local.csv --label malignant'

The same contract as trainer_numpy.py (docs/TRAINER.md): the global model's
named tensors ("weight", "bias"; for mlp "hidden.weight", "hidden.bias",
"out.weight", "out.bias") are exactly the state_dict of the nn.Module
below, so load_state_dict takes them as they are. Client level: one epoch
of SGD, update = trained - global. Record level: every record's gradient
clipped to L2 norm `clip`, summed, with "records" in the metadata.

Not run by fl-secure's tests (they need nothing outside the repository);
trainer_numpy.py is.
"""

import argparse
import csv
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def build(man):
    d, o = man["features"], man["outputs"]
    if man["model"] == "mlp":
        layers = [("hidden", torch.nn.Linear(d, man["hidden"])), ("act", torch.nn.Tanh()), ("out", torch.nn.Linear(man["hidden"], o))]
        return torch.nn.Sequential(OrderedDict(layers))
    return torch.nn.Linear(d, o)


def loss_fn(man, z, y):
    if man["model"] == "linear":
        return 0.5 * ((z[:, 0] - y) ** 2).sum()
    if man["outputs"] == 1:
        return torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], y, reduction="sum")
    return torch.nn.functional.cross_entropy(z, y.long(), reduction="sum")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--learning-rate", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    with open(os.environ["FL_SECURE_LAYOUT"]) as f:
        man = json.load(f)
    if man.get("format") != "fl-secure-trainer/1":
        sys.exit("unknown manifest format %r" % man.get("format"))
    global_sd = {k: v.to(torch.float64) for k, v in load_file(os.environ["FL_SECURE_MODEL"]).items()}
    net = build(man).to(torch.float64)
    net.load_state_dict(global_sd)  # strict: the names and shapes must be the layout's

    with open(args.data, newline="") as f:
        rows = list(csv.reader(f))
    head = [h.strip() for h in rows[0]]
    li = head.index(args.label)
    data = np.array([[float(v) for v in r] for r in rows[1:] if r])
    x = torch.tensor((np.delete(data, li, axis=1) - man["mean"]) / np.array(man["scale"]))
    y = torch.tensor(data[:, li])
    if "label_scale" in man:
        y = (y - man["label_mean"]) / man["label_scale"]

    meta = {}
    if man["level"] == "record":
        if int(os.environ["FL_SECURE_RECORDS"]) != len(y):
            sys.exit("told to use %s records; the data has %d" % (os.environ["FL_SECURE_RECORDS"], len(y)))
        total = {k: torch.zeros_like(v) for k, v in net.named_parameters()}
        for i in range(len(y)):
            net.zero_grad()
            loss_fn(man, net(x[i : i + 1]), y[i : i + 1]).backward()
            norm = torch.sqrt(sum((p.grad**2).sum() for p in net.parameters()))
            factor = min(1.0, man["clip"] / max(norm.item(), 1e-300))
            for k, p in net.named_parameters():
                total[k] += factor * p.grad
        update = total
        meta["records"] = str(len(y))
    else:
        opt = torch.optim.SGD(net.parameters(), lr=args.learning_rate)
        g = torch.Generator().manual_seed(man["round"])
        order = torch.randperm(len(y), generator=g)
        for s in range(0, len(y), args.batch_size):
            b = order[s : s + args.batch_size]
            opt.zero_grad()
            (loss_fn(man, net(x[b]), y[b]) / len(b)).backward()
            opt.step()
        update = {k: v.detach() - global_sd[k] for k, v in net.state_dict().items()}
    save_file({k: v.contiguous() for k, v in update.items()}, os.environ["FL_SECURE_UPDATE"], metadata=meta)
    print("round %d: %s-level update over %d records" % (man["round"], man["level"], len(y)))


if __name__ == "__main__":
    main()
