#!/usr/bin/env python3
"""Writes the PyTorch parity fixtures of the fine-tuning tests: for each tiny configuration of CONFIGS, a
Hugging Face model directory (config.json, model.safetensors), the inputs (ragged masks, token types,
labels), and what PyTorch computes from them: logits, loss, every parameter's gradient after one backward
(no dropout), and the loss before each of 10 AdamW steps. A configuration with num_labels 1 is a regression
head (transformers' rule): float labels and the mean squared error instead of cross-entropy. fixtures.json lists them (names and sizes are
read from there by the tests, never typed twice).

The model is BertForSequenceClassification written out in plain torch (transformers is not installable on
the development machines): the same modules, names and arithmetic as transformers' modeling_bert in eval
mode, with exact-erf GELU and the float-minimum attention mask.
Run with Debian's PyTorch: /usr/bin/python3 tests/Engine.Tests/Fixtures/pytorch/generate.py
"""
import json
import math
import pathlib
import struct

import torch

HERE = pathlib.Path(__file__).resolve().parent
CONFIGS = {
    "tiny-3-labels": dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                          max_position_embeddings=16, type_vocab_size=2, num_labels=3, batch=3, tokens=7, seed=1),
    "tiny-2-labels": dict(vocab_size=40, hidden_size=12, num_hidden_layers=1, num_attention_heads=3, intermediate_size=20,
                          max_position_embeddings=24, type_vocab_size=2, num_labels=2, batch=4, tokens=9, seed=2),
    "tiny-regression": dict(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=12,
                            max_position_embeddings=12, type_vocab_size=2, num_labels=1, batch=3, tokens=6, seed=3),
}
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, steps=10, max_grad_norm=1.0)


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header).encode()
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)


def parameters(c):
    """Hugging Face names and shapes, in module order."""
    C, I = c["hidden_size"], c["intermediate_size"]
    shapes = {"bert.embeddings.word_embeddings.weight": (c["vocab_size"], C), "bert.embeddings.position_embeddings.weight": (c["max_position_embeddings"], C),
              "bert.embeddings.token_type_embeddings.weight": (c["type_vocab_size"], C), "bert.embeddings.LayerNorm.weight": (C,), "bert.embeddings.LayerNorm.bias": (C,)}
    for l in range(c["num_hidden_layers"]):
        p = f"bert.encoder.layer.{l}."
        for part in ("query", "key", "value"):
            shapes[f"{p}attention.self.{part}.weight"] = (C, C)
            shapes[f"{p}attention.self.{part}.bias"] = (C,)
        shapes.update({f"{p}attention.output.dense.weight": (C, C), f"{p}attention.output.dense.bias": (C,),
                       f"{p}attention.output.LayerNorm.weight": (C,), f"{p}attention.output.LayerNorm.bias": (C,),
                       f"{p}intermediate.dense.weight": (I, C), f"{p}intermediate.dense.bias": (I,),
                       f"{p}output.dense.weight": (C, I), f"{p}output.dense.bias": (C,),
                       f"{p}output.LayerNorm.weight": (C,), f"{p}output.LayerNorm.bias": (C,)})
    shapes.update({"bert.pooler.dense.weight": (C, C), "bert.pooler.dense.bias": (C,),
                   "classifier.weight": (c["num_labels"], C), "classifier.bias": (c["num_labels"],)})
    return shapes


def forward(w, c, ids, mask, types, labels):
    B, T, C = ids.shape[0], ids.shape[1], c["hidden_size"]
    NH = c["num_attention_heads"]
    HS = C // NH
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (C,), w[p + ".weight"], w[p + ".bias"], eps=1e-12)
    lin = lambda x, p: torch.nn.functional.linear(x, w[p + ".weight"], w[p + ".bias"])
    x = w["bert.embeddings.word_embeddings.weight"][ids] + w["bert.embeddings.position_embeddings.weight"][torch.arange(T)][None] \
        + w["bert.embeddings.token_type_embeddings.weight"][types]
    x = ln(x, "bert.embeddings.LayerNorm")
    additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    for l in range(c["num_hidden_layers"]):
        p = f"bert.encoder.layer.{l}."
        heads = lambda t: t.view(B, T, NH, HS).transpose(1, 2)
        q, k, v = (heads(lin(x, p + f"attention.self.{part}")) for part in ("query", "key", "value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(HS) + additive
        context = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
        h1 = ln(lin(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        x = ln(lin(torch.nn.functional.gelu(lin(h1, p + "intermediate.dense")), p + "output.dense") + h1, p + "output.LayerNorm")
    pooled = torch.tanh(lin(x[:, 0], "bert.pooler.dense"))
    logits = lin(pooled, "classifier")
    if c["num_labels"] == 1:  # transformers: MSELoss()(logits.squeeze(), labels.squeeze())
        return logits, torch.nn.functional.mse_loss(logits.squeeze(-1), labels)
    return logits, torch.nn.functional.cross_entropy(logits, labels)


def main():
    index = []
    for name, c in CONFIGS.items():
        torch.manual_seed(c["seed"])
        out = HERE / name
        (out / "model").mkdir(parents=True, exist_ok=True)
        w = {}
        for key, shape in parameters(c).items():
            t = torch.randn(shape) * 0.2
            if key.endswith("LayerNorm.weight"):
                t = 1 + 0.1 * torch.randn(shape)
            w[key] = t.requires_grad_()
        B, T = c["batch"], c["tokens"]
        ids = torch.randint(1, c["vocab_size"], (B, T))
        lengths = [T - 3 * b if T - 3 * b > 1 else 2 for b in range(B)]
        mask = torch.tensor([[1 if t < n else 0 for t in range(T)] for n in lengths])
        types = torch.tensor([[1 if t >= n // 2 else 0 for t in range(T)] for n in lengths]) * mask
        ids = ids * mask
        regression = c["num_labels"] == 1
        labels = torch.randn(B) * 2 if regression else torch.randint(0, c["num_labels"], (B,))

        config = {k: c[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                     "max_position_embeddings", "type_vocab_size", "num_labels")}
        config.update(architectures=["BertForSequenceClassification"], model_type="bert", hidden_act="gelu", layer_norm_eps=1e-12,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0,
                      problem_type="regression" if regression else "single_label_classification")
        (out / "model" / "config.json").write_text(json.dumps(config, indent=2))
        write_safetensors(out / "model" / "model.safetensors", w)
        write_safetensors(out / "inputs.safetensors", {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels})

        logits, loss = forward(w, c, ids, mask, types, labels)
        loss.backward()
        expected = {"logits": logits, "loss": loss.reshape(1)}
        expected.update({f"grad.{k}": t.grad.detach().clone() for k, t in w.items()})  # zero_grad below reuses the tensors
        # Ten AdamW steps: no decay on biases and LayerNorm weights, gradient clipping, the loss before each update.
        decay = [t for k, t in w.items() if not (k.endswith(".bias") or "LayerNorm" in k)]
        no_decay = [t for k, t in w.items() if k.endswith(".bias") or "LayerNorm" in k]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
                                      lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"])
        losses = []
        for _ in range(ADAMW["steps"]):
            optimizer.zero_grad()
            _, loss = forward(w, c, ids, mask, types, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(w.values()), ADAMW["max_grad_norm"])
            optimizer.step()
            losses.append(loss.item())
        expected["adamw_losses"] = torch.tensor(losses)
        write_safetensors(out / "expected.safetensors", expected)
        index.append({"name": name, "batch": B, "tokens": T, "num_labels": c["num_labels"],
                      "problem_type": "regression" if regression else "single_label_classification"})
    (HERE / "fixtures.json").write_text(json.dumps({"adamw": ADAMW, "fixtures": index}, indent=2) + "\n")


if __name__ == "__main__":
    main()
