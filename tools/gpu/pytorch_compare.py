#!/usr/bin/env python3
"""PyTorch's half of the GPU script (tools/gpu/run.sh): reads OUTPUT_DIR/engine.json written by
Engine.GpuCheck, loads the same random-weight models with Hugging Face transformers on the same GPU,
checks the engine's CUDA outputs against them, times the same kernels' shapes, the same forward passes and
fine-tuning steps in PyTorch (fp32 with TF32 off, as the engine's fp32 kernels; TF32 on; autocast to fp16, with
GradScaler when training, and to bf16), and writes the table of ratios to OUTPUT_DIR/pytorch.json and prints it.
Usage: python3 pytorch_compare.py OUTPUT_DIR"""
import contextlib
import json
import pathlib
import statistics
import sys


def main() -> int:
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-results")
    engine = json.loads((out / "engine.json").read_text())
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: comparison skipped")
        return 0
    if not engine.get("cuda") or not torch.cuda.is_available():
        print("no CUDA device (or the engine ran without one): PyTorch comparison skipped")
        return 0
    import torch.nn.functional as F
    global DTYPES
    DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    from safetensors.torch import load_file
    from transformers import BertForSequenceClassification, BertModel

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda")
    report = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "models": [], "kernels": [], "forward": []}
    failures = 0

    def median_ms(fn, warmup=3, runs=50):
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    # 1. The engine's CUDA outputs against transformers on the same weights and ragged batch.
    models = {}
    # The int8 models are the engine's own format (I8 weights with scales), compared with its CPU backend only.
    # So are the runs with reduced-precision Linears (no directory of their own: the fp32 model's).
    for m in [m for m in engine.get("models", []) if "directory" in m and not m["name"].endswith("-int8")]:
        model = BertModel.from_pretrained(m["directory"], attn_implementation="eager").to(device).eval()
        models[m["name"]] = model
        ref = load_file(str(pathlib.Path(m["directory"]) / "engine_outputs.safetensors"))
        with torch.no_grad():
            hidden = model(input_ids=ref["input_ids"].to(device), attention_mask=ref["attention_mask"].to(device)).last_hidden_state.cpu()
        real = ref["attention_mask"].bool()
        error = (hidden - ref["last_hidden_state"])[real].abs().max().item()
        passed = error <= 1e-4
        failures += not passed
        print(f"{'  ' if passed else '! '}model {m['name']}: engine CUDA vs transformers CUDA, max |delta| on real tokens {error:.2e}")
        report["models"].append({"name": m["name"], "max_abs_error_vs_transformers": error, "passed": passed})

    # 2. The kernels' shapes in PyTorch (BERT-base: 32 x 128 tokens, hidden 768, 12 heads of 64, FFN 3072).
    B, T, C, NH, HS, I = 32, 128, 768, 12, 64, 3072
    M = B * T
    g = torch.Generator(device=device).manual_seed(1)
    rand = lambda *shape: torch.rand(*shape, device=device, generator=g) - 0.5
    linears = {"bert-base-qkv": (C, 3 * C, False), "bert-base-attn-out": (C, C, False),
               "bert-base-ffn-in-gelu": (C, I, True), "bert-base-ffn-out": (I, C, False)}
    torch_ms = {}
    with torch.no_grad():
        for name, (k, n, gelu) in linears.items():
            x, w, b = rand(M, k), rand(n, k), rand(n)
            for precision in PRECISIONS:
                # fp32 operands as the engine takes them: autocast converts them each call, as the engine does.
                with tf32(precision == "tf32"), autocast(precision):
                    key = name if precision == "fp32" else f"{name} ({precision}, tensor cores)"
                    torch_ms[key] = median_ms((lambda: F.gelu(F.linear(x, w, b))) if gelu else (lambda: F.linear(x, w, b)))
        q, k_, v = rand(B, NH, T, HS), rand(B, NH, T, HS), rand(B, NH, T, HS)
        torch_ms["bert-base-attention"] = median_ms(lambda: F.scaled_dot_product_attention(q, k_, v))
        for precision in ("fp16", "bf16"):
            qh, kh, vh = (t.to(DTYPES[precision]) for t in (q, k_, v))
            torch_ms[f"bert-base-attention ({precision}, flash)"] = median_ms(lambda: F.scaled_dot_product_attention(qh, kh, vh))
        x, r, wln, bln = rand(M, C), rand(M, C), rand(C), rand(C)
        torch_ms["bert-base-layernorm"] = median_ms(lambda: F.layer_norm(x + r, (C,), wln, bln, 1e-12))
        # 4096^3 products: cuBLAS on operands already in the format (the engine converts its fp32 operands every call).
        size = 4096
        for precision in PRECISIONS:
            a, b = rand(size, size).to(DTYPES[precision]), rand(size, size).to(DTYPES[precision])
            with tf32(precision == "tf32"):
                torch_ms[f"gemm-4096 ({precision})"] = median_ms(lambda: torch.matmul(a, b))
        # 3. Forward passes at batch 32 x 128, as the engine timed them (outputs copied to the host), per precision.
        forward_ms = {}
        for name, model in models.items():
            directory = next(m["directory"] for m in engine["models"] if m["name"] == name)
            sdpa = BertModel.from_pretrained(directory, attn_implementation="sdpa").to(device).eval()
            ids = torch.randint(1000, model.config.vocab_size, (B, T), device=device, generator=g)
            mask = torch.ones(B, T, dtype=torch.long, device=device)
            for precision in PRECISIONS:
                with tf32(precision == "tf32"), autocast(precision):
                    forward_ms[label(name, precision)] = median_ms(lambda: sdpa(input_ids=ids, attention_mask=mask).last_hidden_state.float().cpu(), runs=20)
            # The model held in fp16 (.half(), as a checkpoint stored in F16 runs): the engine's "-f16" model in fp16.
            sdpa.half()
            forward_ms[f"{name}-f16 (fp16)"] = median_ms(lambda: sdpa(input_ids=ids, attention_mask=mask).last_hidden_state.float().cpu(), runs=20)
            del sdpa

    # 4. A fine-tuning step of a two-class classifier at batch 32 x 128 (dropout on, AdamW), per precision: autocast to
    # fp16 with GradScaler, to bf16 without, as the engine's steps.
    step_ms = {}
    for name in models:
        directory = next(m["directory"] for m in engine["models"] if m["name"] == name)
        for precision in PRECISIONS:
            classifier = BertForSequenceClassification.from_pretrained(directory, num_labels=2, attn_implementation="sdpa").to(device).train()
            optimizer = torch.optim.AdamW(classifier.parameters(), lr=1e-5, weight_decay=0.01)
            scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
            ids = torch.randint(1000, classifier.config.vocab_size, (B, T), device=device, generator=g)
            mask = torch.ones(B, T, dtype=torch.long, device=device)
            labels = torch.arange(B, device=device) % 2

            def step():
                optimizer.zero_grad(set_to_none=True)
                with tf32(precision == "tf32"), autocast(precision):
                    loss = classifier(input_ids=ids, attention_mask=mask, labels=labels).loss
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(classifier.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()

            step_ms[label(name, precision)] = median_ms(step, warmup=2, runs=10)
            del classifier, optimizer

    rows = []
    for kernel in engine.get("kernels", []):
        key = kernel["name"].split("/", 1)[-1]  # the engine names a case op/name
        if key in torch_ms:
            rows.append((f"kernel {key}", kernel["median_ms"], torch_ms[key]))
    for forward in engine.get("forward", []):
        if forward["name"] in forward_ms:
            rows.append((f"forward {forward['name']} 32x128", forward["median_ms"], forward_ms[forward["name"]]))
    for training in engine.get("training_step", []):
        if training["name"] in step_ms:
            rows.append((f"training step {training['name']} 32x128", training["median_ms"], step_ms[training["name"]]))
    report["rows"] = [{"what": w, "engine_ms": e, "torch_ms": t, "ratio": e / t} for w, e, t in rows]
    report["failures"] = failures
    (out / "pytorch.json").write_text(json.dumps(report, indent=2))

    print(f"\n{report['gpu']}, PyTorch {report['torch']}; fp32 with TF32 off unless a row names its precision; ratio = engine time / PyTorch time")
    print(f"| {'what':<40} | {'engine ms':>10} | {'PyTorch ms':>10} | {'ratio':>6} |")
    print(f"|{'-' * 42}|{'-' * 12}|{'-' * 12}|{'-' * 8}|")
    for what, e, t in rows:
        print(f"| {what:<40} | {e:>10.3f} | {t:>10.3f} | {e / t:>6.2f} |")
    return 1 if failures else 0


PRECISIONS = ["fp32", "tf32", "fp16", "bf16"]


def label(name: str, precision: str) -> str:
    """The engine's name for a run: the model alone in fp32, else with its precision."""
    return name if precision == "fp32" else f"{name} ({precision})"


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 matmuls and convolutions while the block runs (PyTorch's fp32 default here is off, as the engine's fp32)."""
    import torch
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def autocast(precision: str):
    """torch.autocast to fp16 or bf16 on CUDA; nothing for fp32 and tf32."""
    import torch
    if precision in ("fp16", "bf16"):
        return torch.autocast("cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)
    return contextlib.nullcontext()


if __name__ == "__main__":
    sys.exit(main())
