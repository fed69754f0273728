#!/usr/bin/env python3
"""Writes a reference file for `engine validate`: a Hugging Face model's outputs, computed by PyTorch and transformers
on the same inputs, in the one-file format of the README ("The reference format").

    python3 tools/make_reference.py --model DIR --output REF.safetensors [--text TEXT ...] [--labels 1 0 ...] [--grads]

Inputs: the texts (tokenized by the model's own tokenizer, padded to the longest), or a few default sentences.
Outputs: last_hidden_state, pooler_output (when the model has a pooler), attentions.<layer> (output_attentions), logits
for a classification or masked-LM head, and with --labels the loss; with --grads also grad.<parameter> for every
parameter after one backward of that loss. Everything in float32 with dropout off (eval mode). For a masked-LM head,
--labels gives no values: the labels are the input ids at every real token but [CLS] and [SEP] (-100 elsewhere).

Needs torch, transformers and safetensors (a GPU machine, or any machine that has them); the test suite's reference
files are made by tests/Engine.Tests/Fixtures/pytorch/generate.py instead, which needs only torch.
"""
import argparse
import sys

DEFAULT_TEXTS = ["A man is eating food.", "The quick brown fox jumps over the lazy dog near the river bank."]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a Hugging Face model directory")
    parser.add_argument("--output", required=True, help="the reference file to write")
    parser.add_argument("--text", nargs="+", default=DEFAULT_TEXTS, help="texts to run (default: two sentences)")
    parser.add_argument("--labels", nargs="*", type=float, help="one label per text (class ids, or values for regression); "
                        "for a masked-LM head, given without values: the input ids are the labels")
    parser.add_argument("--grads", action="store_true", help="also write grad.<parameter> after one backward of the loss")
    args = parser.parse_args()
    try:
        import torch
        from safetensors.torch import save_file
        from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer
    except ImportError as e:
        print(f"error: {e.name} is not installed (make_reference.py needs torch, transformers and safetensors)", file=sys.stderr)
        return 1

    config = AutoConfig.from_pretrained(args.model)
    architecture = (config.architectures or ["BertModel"])[0]
    loader = {"BertForSequenceClassification": AutoModelForSequenceClassification, "BertForMaskedLM": AutoModelForMaskedLM}.get(architecture, AutoModel)
    if loader is AutoModel:
        architecture = "BertModel"
    model = loader.from_pretrained(args.model, torch_dtype=torch.float32, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    batch = tokenizer(args.text, padding=True, return_tensors="pt")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "token_type_ids": batch.get("token_type_ids", torch.zeros_like(batch["input_ids"]))}

    labels = None
    if args.labels is not None:
        if architecture == "BertForMaskedLM":
            special = (inputs["input_ids"] == tokenizer.cls_token_id) | (inputs["input_ids"] == tokenizer.sep_token_id)
            labels = torch.where((inputs["attention_mask"] == 1) & ~special, inputs["input_ids"], torch.full_like(inputs["input_ids"], -100))
        elif architecture == "BertForSequenceClassification":
            if len(args.labels) != len(args.text):
                print(f"error: {len(args.labels)} labels for {len(args.text)} texts", file=sys.stderr)
                return 1
            regression = config.num_labels == 1
            labels = torch.tensor(args.labels, dtype=torch.float32 if regression else torch.long)
        else:
            print("error: --labels needs a model with a head (BertForSequenceClassification or BertForMaskedLM)", file=sys.stderr)
            return 1

    with torch.set_grad_enabled(args.grads):
        if architecture == "BertModel":
            out = model(**inputs, output_attentions=True)
            encoder = out
        else:
            out = model(**inputs, labels=labels, output_attentions=True, output_hidden_states=True)
            encoder = model.bert(**inputs)  # last_hidden_state and pooler_output of the base model

    tensors = {name: t.contiguous() for name, t in inputs.items()}
    if labels is not None:
        tensors["labels"] = labels
    tensors["last_hidden_state"] = encoder.last_hidden_state.detach().float()
    if getattr(encoder, "pooler_output", None) is not None:
        tensors["pooler_output"] = encoder.pooler_output.detach().float()
    for layer, attention in enumerate(out.attentions):
        tensors[f"attentions.{layer}"] = attention.detach().float().contiguous()
    if architecture != "BertModel":
        tensors["logits"] = out.logits.detach().float().contiguous()
        if labels is not None:
            tensors["loss"] = out.loss.detach().float().reshape(1)
            if args.grads:
                out.loss.backward()
                for name, parameter in model.named_parameters():
                    if parameter.grad is not None:
                        tensors[f"grad.{name}"] = parameter.grad.detach().float().contiguous()
    metadata = {"architecture": architecture, "dtype": "float32", "dropout": "off",
                "producer": f"tools/make_reference.py (torch {torch.__version__}, transformers {__import__('transformers').__version__})"}
    save_file(tensors, args.output, metadata=metadata)
    print(f"wrote {args.output}: {len(tensors)} tensors ({architecture})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
