#!/usr/bin/env python3
"""Writes the PyTorch parity fixtures of the training tests: for each tiny configuration of CONFIGS, a
Hugging Face model directory (config.json, model.safetensors), the inputs (ragged masks, token types,
labels), and what PyTorch computes from them: logits, loss, every parameter's gradient after one backward
(no dropout), the loss before each of 10 AdamW steps, and each layer's attention probabilities (attentions.<layer>, as
output_attentions gives them). Each fixture also gets reference.safetensors: its inputs and outputs in the one-file
format `engine validate` reads (README: the reference format), with last_hidden_state, pooler_output, logits, loss,
the attention maps and grad.<parameter>. A configuration with num_labels 1 is a regression
head (transformers' rule): float labels and the mean squared error instead of cross-entropy. MASKED_LM
configurations are BertForMaskedLM (no pooler) or, with a sentence head, BertForPreTraining: the decoder tied to
the word embeddings (one tensor used twice, so its gradient sums both uses), token labels -100 except at the
masked positions, the loss the masked-LM cross-entropy plus the sentence head's; the masked-LM model also has a
word-level vocab.txt and fill-mask cases (texts, each mask's top-5 token ids and probabilities, and with
targets). fixtures.json lists them (names and sizes are read from there by the tests, never typed twice).

The models are transformers' modeling_bert written out in plain torch (transformers is not installable on
the development machines): the same modules, names and arithmetic in eval mode, with exact-erf GELU and the
float-minimum attention mask.
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
MASKED_LM = {
    "tiny-mlm": dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=16, type_vocab_size=2, sentence=None, store_decoder=True, batch=3, tokens=8, seed=4),
    "tiny-pretraining-sop": dict(vocab_size=37, hidden_size=12, num_hidden_layers=1, num_attention_heads=3, intermediate_size=20,
                                 max_position_embeddings=12, type_vocab_size=2, sentence="sop", store_decoder=False, batch=4, tokens=7, seed=5),
}
# The masked-LM model's vocabulary: BERT's special tokens first, then whole words (so the generator tokenizes by splitting on spaces).
WORDS = ("the quick brown fox jumps over lazy dog a cat sat on mat and ran to house big small red blue green is was it he she they "
         "we you this that of in at for with by from up down out good bad day night").split()
FILL_MASK_TEXTS = ["the quick brown fox jumps over the [MASK] dog", "a [MASK] sat on the [MASK]", "[MASK] was a good day"]
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, steps=10, max_grad_norm=1.0)


def write_safetensors(path, tensors, metadata=None):
    header, offset, blobs = ({"__metadata__": metadata} if metadata else {}), 0, []
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


def mlm_parameters(c):
    """BertForMaskedLM's names (no pooler) or BertForPreTraining's; the decoder weight is the word embeddings."""
    C = c["hidden_size"]
    shapes = {k: v for k, v in parameters(dict(c, num_labels=1)).items() if not k.startswith("classifier") and (c["sentence"] or not k.startswith("bert.pooler"))}
    shapes.update({"cls.predictions.transform.dense.weight": (C, C), "cls.predictions.transform.dense.bias": (C,),
                   "cls.predictions.transform.LayerNorm.weight": (C,), "cls.predictions.transform.LayerNorm.bias": (C,),
                   "cls.predictions.bias": (c["vocab_size"],)})
    if c["sentence"]:
        shapes.update({"cls.seq_relationship.weight": (2, C), "cls.seq_relationship.bias": (2,)})
    return shapes


def reference_metadata(architecture):
    return {"architecture": architecture, "dtype": "float32", "dropout": "off",
            "producer": f"tests/Engine.Tests/Fixtures/pytorch/generate.py (torch {torch.__version__}; transformers' modeling_bert in plain torch)"}


def write_reference(out, architecture, inputs, outputs, w, c, ids, mask, types, pooler):
    """reference.safetensors: the inputs, the encoder's outputs and maps (no grad here), and the head's outputs and gradients."""
    attentions = []
    with torch.no_grad():
        hidden = encoder(w, c, ids, mask, types, attentions)
        encoded = {"last_hidden_state": hidden}
        if pooler:
            encoded["pooler_output"] = torch.tanh(torch.nn.functional.linear(hidden[:, 0], w["bert.pooler.dense.weight"], w["bert.pooler.dense.bias"]))
        encoded.update({f"attentions.{l}": a for l, a in enumerate(attentions)})
    write_safetensors(out / "reference.safetensors", {**inputs, **encoded, **outputs}, reference_metadata(architecture))


def encoder(w, c, ids, mask, types, attentions=None):
    """The last hidden state; each layer's attention probabilities (B, NH, T, T) are appended to attentions when given."""
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
        probabilities = torch.softmax(scores, dim=-1)
        if attentions is not None:
            attentions.append(probabilities.detach().clone())
        context = (probabilities @ v).transpose(1, 2).reshape(B, T, C)
        h1 = ln(lin(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        x = ln(lin(torch.nn.functional.gelu(lin(h1, p + "intermediate.dense")), p + "output.dense") + h1, p + "output.LayerNorm")
    return x


def forward(w, c, ids, mask, types, labels):
    lin = lambda x, p: torch.nn.functional.linear(x, w[p + ".weight"], w[p + ".bias"])
    x = encoder(w, c, ids, mask, types)
    pooled = torch.tanh(lin(x[:, 0], "bert.pooler.dense"))
    logits = lin(pooled, "classifier")
    if c["num_labels"] == 1:  # transformers: MSELoss()(logits.squeeze(), labels.squeeze())
        return logits, torch.nn.functional.mse_loss(logits.squeeze(-1), labels)
    return logits, torch.nn.functional.cross_entropy(logits, labels)


def mlm_forward(w, c, ids, mask, types, labels, sentence_labels):
    """Logits (B,T,V) at every position, and the loss: masked-LM cross-entropy (+ the sentence head's)."""
    C, V = c["hidden_size"], c["vocab_size"]
    lin = lambda x, p: torch.nn.functional.linear(x, w[p + ".weight"], w[p + ".bias"])
    x = encoder(w, c, ids, mask, types)
    h = torch.nn.functional.layer_norm(torch.nn.functional.gelu(lin(x, "cls.predictions.transform.dense")), (C,),
                                       w["cls.predictions.transform.LayerNorm.weight"], w["cls.predictions.transform.LayerNorm.bias"], eps=1e-12)
    logits = torch.nn.functional.linear(h, w["bert.embeddings.word_embeddings.weight"], w["cls.predictions.bias"])
    loss = torch.nn.functional.cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index=-100)
    if c["sentence"]:
        seq = lin(torch.tanh(lin(x[:, 0], "bert.pooler.dense")), "cls.seq_relationship")
        loss = loss + torch.nn.functional.cross_entropy(seq, sentence_labels)
    return logits, loss


def adamw_losses(w, loss_of):
    """The loss before each of ADAMW's steps: no decay on biases and LayerNorm weights, gradient clipping."""
    decay = [t for k, t in w.items() if not (k.endswith(".bias") or "LayerNorm" in k)]
    no_decay = [t for k, t in w.items() if k.endswith(".bias") or "LayerNorm" in k]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"])
    losses = []
    for _ in range(ADAMW["steps"]):
        optimizer.zero_grad()
        loss = loss_of()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(w.values()), ADAMW["max_grad_norm"])
        optimizer.step()
        losses.append(loss.item())
    return torch.tensor(losses)


def random_weights(shapes):
    w = {}
    for key, shape in shapes.items():
        t = torch.randn(shape) * 0.2
        if key.endswith("LayerNorm.weight"):
            t = 1 + 0.1 * torch.randn(shape)
        w[key] = t.requires_grad_()
    return w


def ragged(B, T, vocab, low):
    """Ids in [low, vocab) behind [CLS] (2) and before [SEP] (3), ragged lengths, two segments."""
    lengths = [T - 2 * b if T - 2 * b > 2 else 3 for b in range(B)]
    mask = torch.tensor([[1 if t < n else 0 for t in range(T)] for n in lengths])
    ids = torch.randint(low, vocab, (B, T)) * mask
    for b, n in enumerate(lengths):
        ids[b, 0], ids[b, n - 1] = 2, 3
    types = torch.tensor([[1 if n // 2 <= t < n else 0 for t in range(T)] for n in lengths])
    return ids, mask, types, lengths


def masked_lm(name, c):
    torch.manual_seed(c["seed"])
    out = HERE / name
    (out / "model").mkdir(parents=True, exist_ok=True)
    w = random_weights(mlm_parameters(c))
    B, T, V = c["batch"], c["tokens"], c["vocab_size"]
    ids, mask, types, lengths = ragged(B, T, V, 5)
    # Masked positions: real tokens between [CLS] and [SEP], at least one per row; the input there becomes [MASK] (4).
    chosen = (torch.rand(B, T) < 0.35) & (mask == 1)
    for b, n in enumerate(lengths):
        chosen[b, 0] = chosen[b, n - 1] = False
        chosen[b, 1] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    ids = torch.where(chosen, torch.full_like(ids, 4), ids)
    sentence_labels = torch.randint(0, 2, (B,))

    config = {k: c[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                 "max_position_embeddings", "type_vocab_size")}
    config.update(architectures=["BertForPreTraining" if c["sentence"] else "BertForMaskedLM"], model_type="bert", hidden_act="gelu",
                  layer_norm_eps=1e-12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0, tie_word_embeddings=True)
    if c["sentence"]:
        config["sentence_objective"] = c["sentence"]
    (out / "model" / "config.json").write_text(json.dumps(config, indent=2))
    stored = dict(w)
    if c["store_decoder"]:  # as older checkpoints hold it: a copy that must equal the embeddings
        stored["cls.predictions.decoder.weight"] = w["bert.embeddings.word_embeddings.weight"]
    write_safetensors(out / "model" / "model.safetensors", stored)
    write_safetensors(out / "inputs.safetensors", {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels,
                                                   "sentence_labels": sentence_labels})
    logits, loss = mlm_forward(w, c, ids, mask, types, labels, sentence_labels)
    loss.backward()
    expected = {"logits": logits, "loss": loss.reshape(1)}
    expected.update({f"grad.{k}": t.grad.detach().clone() for k, t in w.items()})
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}
    if c["sentence"]:
        inputs["sentence_labels"] = sentence_labels
    write_reference(out, config["architectures"][0], inputs, expected, w, c, ids, mask, types, pooler=bool(c["sentence"]))
    entry = {"name": name, "batch": B, "tokens": T, "sentence": c["sentence"]}
    if not c["sentence"]:
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS[: V - 5]
        (out / "model" / "vocab.txt").write_text("\n".join(vocab) + "\n")
        entry["fill_mask"] = fill_mask_cases(w, c, vocab)
    expected["adamw_losses"] = adamw_losses(w, lambda: mlm_forward(w, c, ids, mask, types, labels, sentence_labels)[1])
    write_safetensors(out / "expected.safetensors", expected)
    return entry


def fill_mask_cases(w, c, vocab):
    """Each text's masks: the top-5 ids and probabilities over the whole vocabulary, and over three target words."""
    targets = ["dog", "cat", "mat"]
    cases = []
    with torch.no_grad():
        for text in FILL_MASK_TEXTS:
            ids = torch.tensor([[2] + [vocab.index(t) for t in text.split()] + [3]])
            ones = torch.ones_like(ids)
            logits, _ = mlm_forward(w, c, ids, ones, torch.zeros_like(ids), torch.full_like(ids, -100), None)
            masks = []
            for position in (ids[0] == 4).nonzero().flatten().tolist():
                probabilities = torch.softmax(logits[0, position].double(), dim=-1)
                top = torch.topk(probabilities, 5)
                restricted = sorted(((probabilities[vocab.index(t)].item(), vocab.index(t)) for t in targets), reverse=True)
                masks.append({"ids": top.indices.tolist(), "scores": top.values.tolist(),
                              "target_ids": [i for _, i in restricted], "target_scores": [p for p, _ in restricted]})
            cases.append({"text": text, "targets": targets, "masks": masks})
    return cases


def main():
    index = []
    for name, c in CONFIGS.items():
        torch.manual_seed(c["seed"])
        out = HERE / name
        (out / "model").mkdir(parents=True, exist_ok=True)
        w = random_weights(parameters(c))
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
        # Hugging Face's output_attentions: every query row, padding queries' included (the engine zeroes those).
        attentions = []
        with torch.no_grad():
            encoder(w, c, ids, mask, types, attentions)
        expected.update({f"attentions.{l}": a for l, a in enumerate(attentions)})
        expected.update({f"grad.{k}": t.grad.detach().clone() for k, t in w.items()})  # zero_grad below reuses the tensors
        write_reference(out, "BertForSequenceClassification", {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels},
                        {k: v for k, v in expected.items() if not k.startswith("attentions.")}, w, c, ids, mask, types, pooler=True)
        expected["adamw_losses"] = adamw_losses(w, lambda: forward(w, c, ids, mask, types, labels)[1])
        write_safetensors(out / "expected.safetensors", expected)
        index.append({"name": name, "batch": B, "tokens": T, "num_labels": c["num_labels"],
                      "problem_type": "regression" if regression else "single_label_classification"})
    masked = [masked_lm(name, c) for name, c in MASKED_LM.items()]
    (HERE / "fixtures.json").write_text(json.dumps({"adamw": ADAMW, "fixtures": index, "masked_lm": masked}, indent=2) + "\n")


if __name__ == "__main__":
    main()
