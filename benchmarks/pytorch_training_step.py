#!/usr/bin/env python3
"""PyTorch's peer of TrainingStepBenchmarks: one fine-tuning pass (forward, mean cross-entropy, backward) of
all-MiniLM-L6-v2 as a two-class classifier at batch 32 x 128 tokens on the CPU, with the plain-torch
BertForSequenceClassification of the parity fixtures (tests/Engine.Tests/Fixtures/pytorch/generate.py; no
dropout there, so this step does a little less work than the engine's).
Usage: /usr/bin/python3 benchmarks/pytorch_training_step.py MODEL_DIR [THREADS]
MODEL_DIR holds config.json and model.safetensors (the engine's imported MiniLM: `engine info` prints where).
Debian's PyTorch calls the system BLAS, which is the slow reference one until OpenBLAS is installed
(apt-get install libopenblas0-pthread: 2 GFLOP/s becomes ~135 on 2 cores); measure only with it.
Prints the median of 5 timed passes after 2 warm-ups, and the forward alone, in milliseconds.
"""
import json
import pathlib
import statistics
import struct
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "Engine.Tests" / "Fixtures" / "pytorch"))
from generate import forward  # noqa: E402  the fixtures' model, not a second copy of it

B, T = 32, 128


def read_safetensors(path):
    data = pathlib.Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", f"{name}: {info['dtype']}"
        start, end = info["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(data[8 + length + start:8 + length + end]), dtype=torch.float32).reshape(info["shape"])
    return tensors


def main():
    directory = pathlib.Path(sys.argv[1])
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else torch.get_num_threads())
    config = json.loads((directory / "config.json").read_text())
    c = dict(config, num_labels=2)
    w = {("bert." + k if not k.startswith("bert.") else k): v.clone().requires_grad_() for k, v in read_safetensors(directory / "model.safetensors").items()}
    generator = torch.Generator().manual_seed(1)
    w["classifier.weight"] = (torch.randn(2, c["hidden_size"], generator=generator) * 0.02).requires_grad_()
    w["classifier.bias"] = torch.zeros(2, requires_grad=True)
    ids = torch.randint(1996, 29612, (B, T), generator=generator)
    ids[:, 0], ids[:, -1] = 101, 102
    mask, types, labels = torch.ones(B, T, dtype=torch.long), torch.zeros(B, T, dtype=torch.long), torch.arange(B) % 2

    def step():
        for t in w.values():
            t.grad = None
        _, loss = forward(w, c, ids, mask, types, labels)
        loss.backward()

    def timed(function, repeats=5, warmups=2):
        for _ in range(warmups):
            function()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    with torch.no_grad():
        forward_ms = timed(lambda: forward(w, c, ids, mask, types, labels))
    step_ms = timed(step)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: forward {forward_ms:.0f} ms, forward+backward {step_ms:.0f} ms")


if __name__ == "__main__":
    main()
