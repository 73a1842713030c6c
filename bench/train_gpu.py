"""Reward-model training on a GPU: a ~0.5B-parameter decoder in bf16, tokens/s and estimated MFU.

The data are bench/train.py's (the demo items' system pairs and, when present, LLMBar), conversational and
multi-turn. The model is ``--model PATH`` when given (a local directory, e.g. a Qwen2.5-0.5B snapshot);
otherwise a Qwen2-style decoder of about 0.5B parameters is built from a config with random weights and a
byte-level BPE tokenizer trained on the data here (no hub access is needed; speed does not depend on the
weights). Each configuration trains one epoch with Palate's trainer:

- ``shared-prefix``: each prompt runs once, its responses continue from its key/value cache;
- ``plain``: every prompt + response sequence runs whole (``shared_prefix="off"``);

With several GPUs, every configuration trains data-parallel on all of them (``--processes``, default one per GPU)
through the launcher a training run uses (``rewardtrain/training/launch.py``: torchrun, DDP, one rank per GPU),
and the rates are the whole machine's.

It reports steady-state training tokens/s (real tokens: prompt and response tokens the model computed,
padding excluded; the first steps, which compile and warm up kernels, are left out), pairs/s, padding share,
peak memory, and the model-FLOPs utilisation estimated as (6 N + 12 L H S) tokens/s / peak, with N the
non-embedding parameters, L layers, H hidden size, S the mean sequence length, and the peak the device's
dense bf16 rate (``--peak-tflops``, 989 for an H100/H200 SXM) times the number of GPUs.

    .venv/bin/python bench/train_gpu.py                 # on the GPU machine (every GPU)
    .venv/bin/python bench/train_gpu.py --processes 1   # one GPU
    .venv/bin/python bench/train_gpu.py --tiny          # CPU smoke test: a 2-layer model, a few steps
    .venv/bin/python bench/train_gpu.py --tiny --processes 2   # the same in two processes (gloo)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def cpu_bench_module():
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "bench" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_decoder(directory: Path, texts: list[str], *, tiny: bool) -> Path:
    """A Qwen2-style decoder with random weights and a BPE tokenizer trained on ``texts``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=2_000 if tiny else 32_000,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|pad|>", unk_token=None
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    if tiny:
        shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
        shape |= {"num_attention_heads": 4, "num_key_value_heads": 2}
    else:
        # Qwen2.5-0.5B's proportions, wider MLP to make up for the smaller vocabulary: about 0.5B parameters.
        shape = {"hidden_size": 1024, "intermediate_size": 5504, "num_hidden_layers": 24}
        shape |= {"num_attention_heads": 16, "num_key_value_heads": 4}
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shape,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def texts_of(rows: list[dict[str, Any]]) -> list[str]:
    texts = []
    for row in rows:
        for side in ("prompt", "chosen", "rejected"):
            texts += [message["content"] for message in row[side]]
    return texts


def model_shape(model_dir: Path) -> dict[str, Any]:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir).get_text_config()
    hidden, layers = config.hidden_size, config.num_hidden_layers
    heads, kv_heads = (
        config.num_attention_heads,
        getattr(config, "num_key_value_heads", config.num_attention_heads),
    )
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    attention = hidden * head_dim * (heads * 2 + kv_heads * 2)
    mlp = 3 * hidden * config.intermediate_size
    non_embedding = layers * (attention + mlp)
    embedding = config.vocab_size * hidden
    return {
        "layers": layers,
        "hidden": hidden,
        "non_embedding": non_embedding,
        "parameters": non_embedding + embedding,
    }


def run(name: str, model_dir: Path, train_rows, args, work: Path, shape: dict[str, Any]) -> dict[str, Any]:
    import torch

    from rewardtrain.training.launch import train_in_processes
    from rewardtrain.training.trainer import train

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    config = {
        "base_model": str(model_dir),
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "num_epochs": 1,
        "max_length": args.max_length,
        "eval_steps": 0,
        "save_steps": 0,
        "shared_prefix": "on" if name == "shared-prefix" else "off",
        "gradient_checkpointing": args.gradient_checkpointing,
        "chunk_overhead_tokens": args.chunk_overhead_tokens,
        "mixed_precision": "bf16",
    }
    if args.processes > 1:
        result = train_in_processes(
            config, train_rows, None, processes=args.processes, output_dir=work, device=args.device
        )
    else:
        result = train(config, train_rows, None, output_dir=work, device=args.device)
    wall = time.perf_counter() - started
    steady = result.history[args.warmup_steps :] or result.history
    seconds = sum(step["seconds"] for step in steady)
    tokens = sum(step["tokens"] for step in steady)
    pairs = sum(step["pairs"] for step in steady)
    tokens_per_second = tokens / seconds
    report = result.data["train"]
    mean_length = report["tokens_after"] / (2 * report["pairs"])
    flops_per_token = 6 * shape["non_embedding"] + 12 * shape["layers"] * shape["hidden"] * mean_length
    mfu = flops_per_token * tokens_per_second / (args.peak_tflops * 1e12 * max(1, args.gpus))
    return {
        "configuration": name,
        "steps": result.global_step,
        "steady_steps": len(steady),
        "tokens_per_second": tokens_per_second,
        "pairs_per_second": pairs / seconds,
        "padding_share": result.timing["padding_share"],
        "sequences_per_pair": result.timing["sequences_per_pair"],
        "mfu": mfu,
        # The ranks' memory is not this process's: only a single-process run reports it.
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30
        if torch.cuda.is_available() and args.processes == 1
        else None,
        "wall_seconds": wall,
        "final_loss": statistics.fmean(step["loss"] for step in result.history[-5:]),
        "truncated": f"{report['prompt_truncated']} / {report['response_truncated']}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model on a few pairs (CPU smoke test)")
    parser.add_argument("--model", type=Path, help="a local model directory instead of the built decoder")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--warmup-steps", type=int, default=3, help="first steps left out of the rates")
    parser.add_argument("--chunk-overhead-tokens", type=int, default=2048)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the device")
    parser.add_argument("--configurations", default="shared-prefix,plain")
    parser.add_argument(
        "--processes",
        type=int,
        help="data-parallel processes (torchrun, one GPU each; gloo on the CPU); default: one per GPU",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--llmbar",
        type=Path,
        default=ROOT.parent / "shared/data/llmbar",
        help="LLMBar's folder, added to the demo data when present (default: ../shared/data/llmbar)",
    )
    args = parser.parse_args()

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    data = cpu_bench_module()
    rows = data.demo_rows(ROOT / "annotate/demo/demo_items.jsonl")
    if args.llmbar.is_dir():
        rows += data.llmbar_rows(args.llmbar)
    train_rows, _ = data.split_by_prompt(rows, 0.25, 42)
    if args.tiny:
        train_rows = train_rows[:24]
        args.batch_size, args.max_length, args.warmup_steps = 4, 128, 1
        args.chunk_overhead_tokens = min(args.chunk_overhead_tokens, 64)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    args.device = "cpu" if device == "auto" else device
    on_gpu = args.device.startswith("cuda")
    if args.processes is None:
        args.processes = max(1, torch.cuda.device_count()) if on_gpu else 1
    args.gpus = args.processes if on_gpu else 0
    name = torch.cuda.get_device_name() if on_gpu else "CPU"
    if args.processes > 1:
        name = f"{args.processes} × {name}"
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model or build_decoder(Path(scratch) / "decoder", texts_of(rows), tiny=args.tiny)
        shape = model_shape(model_dir)
        print(
            f"{name}; torch {torch.__version__}, transformers {transformers.__version__}; model "
            f"{shape['parameters'] / 1e6:.0f}M parameters ({shape['non_embedding'] / 1e6:.0f}M non-embedding); "
            f"{len(train_rows)} pairs, batch {args.batch_size}, max_length {args.max_length}, bf16",
            flush=True,
        )
        results = []
        for configuration in args.configurations.split(","):
            result = run(configuration, model_dir, train_rows, args, Path(scratch) / configuration, shape)
            results.append(result)
            print(
                f"  {configuration}: {result['tokens_per_second']:.0f} tokens/s, MFU {result['mfu']:.1%}",
                flush=True,
            )
    print()
    print(
        "| configuration | tokens/s | pairs/s | MFU | padding share | sequences per pair | peak GiB | "
        "truncated (prompt / response) | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        memory = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "n/a"
        print(
            f"| {r['configuration']} | {r['tokens_per_second']:.0f} | {r['pairs_per_second']:.1f} | {r['mfu']:.1%} "
            f"| {r['padding_share']:.1%} | {r['sequences_per_pair']:.2f} | {memory} | {r['truncated']} "
            f"| {r['wall_seconds']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"device": name, "shape": shape, "results": results}, indent=2))


if __name__ == "__main__":
    main()
