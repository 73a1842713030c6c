"""The trained reward model as a standard Hugging Face directory.

``save_reward_model`` writes ``config.json`` (with ``reward_mean``/``reward_std`` for normalisation,
``problem_type="regression"`` so ``pipeline("text-classification")`` returns raw rewards, and a ``palate``
block with the encoding settings and pooling that scoring needs and the calibrated ``temperature``: P(a
preferred to b) is sigmoid((r_a - r_b) / temperature)), ``model.safetensors``, the tokenizer (with the chat
template the model was trained on), ``README.md`` (a model card with the data, the export policy and the metrics) and
``palate_training.json`` (the whole summary, evaluation report included). LoRA adapters are merged first,
so the directory loads without peft:

    AutoModelForSequenceClassification.from_pretrained(directory)
    pipeline("text-classification", model=directory)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from rewardtrain.training.config import TrainConfig
from rewardtrain.training.model import RewardModel

SUMMARY_FILE = "palate_training.json"


def save_reward_model(
    reward_model: RewardModel,
    output_dir: str | Path,
    *,
    config: TrainConfig,
    evaluation: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    policy: Any = None,
    selection: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Write the model directory and return its path. ``data`` describes the training data (pair counts,
    truncation reports, the validation split); ``policy`` is the export policy the pairs came from (any JSON
    value); ``selection`` the step the weights come from; ``calibration`` the fitted temperature."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = reward_model.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model_config = model.config
    reward_mean = (evaluation or {}).get("reward_mean")
    reward_std = (evaluation or {}).get("reward_std")
    model_config.problem_type = "regression"
    model_config.id2label = {0: "reward"}
    model_config.label2id = {"reward": 0}
    model_config.reward_mean = reward_mean
    model_config.reward_std = reward_std
    summary = {
        "base_model": reward_model.base_model,
        "kind": reward_model.kind,
        "hyperparameters": config.to_dict(),
        "data": data or {},
        "policy": policy,
        "evaluation": evaluation,
        "selection": selection,
        "calibration": _without_table(calibration),
    }
    model_config.palate = {
        "base_model": reward_model.base_model,
        "kind": reward_model.kind,
        **config.encoding(),
        "pooling": reward_model.pooling,
        "temperature": (calibration or {}).get("temperature", 1.0),
        "accuracy": (evaluation or {}).get("accuracy"),
    }
    model.save_pretrained(output_dir)
    reward_model.tokenizer.save_pretrained(output_dir)
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
    (output_dir / "README.md").write_text(model_card(summary, reward_model))
    return output_dir


def _write_replacing(path: Path, text: str) -> None:
    """Writes a new file in place of ``path``: a hard link to another member's file stays as it was."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def _link_tree(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def save_ensemble(
    members: list[Path],
    output_dir: str | Path,
    *,
    offsets: list[float],
    evaluation: dict[str, Any],
    calibration: dict[str, Any] | None,
) -> Path:
    """An ensemble's model directory from its members' (``save_reward_model``): the first member's files (hard
    links where possible) with the others under ``members/member-i``. ``config.palate`` gains ``ensemble``
    (the members' paths relative to the directory, the first "."; each member's offset; the combined score's
    reward mean and std) and the combined score's ``temperature``; ``reward_mean``/``reward_std`` at the top
    stay the first member's, which is what ``AutoModelForSequenceClassification`` loads from the directory."""
    output_dir = Path(output_dir)
    shutil.copytree(members[0], output_dir, copy_function=_link_tree)
    paths = ["."]
    for index, member in enumerate(members[1:], start=1):
        relative = f"members/member-{index}"
        shutil.copytree(member, output_dir / relative, copy_function=_link_tree)
        paths.append(relative)
    config_path = output_dir / "config.json"
    model_config = json.loads(config_path.read_text())
    model_config["palate"] = {
        **model_config.get("palate", {}),
        "temperature": (calibration or {}).get("temperature", 1.0),
        "accuracy": evaluation.get("accuracy"),
        "ensemble": {
            "members": paths,
            "offsets": offsets,
            "reward_mean": evaluation.get("reward_mean"),
            "reward_std": evaluation.get("reward_std"),
        },
    }
    _write_replacing(config_path, json.dumps(model_config, indent=2))
    summary = json.loads((output_dir / SUMMARY_FILE).read_text())
    summary.update(
        evaluation=evaluation,
        calibration=_without_table(calibration),
        member_evaluation=summary.get("evaluation"),
    )
    _write_replacing(output_dir / SUMMARY_FILE, json.dumps(summary, indent=2, default=str))
    card = (output_dir / "README.md").read_text()
    ensemble = evaluation["ensemble"]
    card += "\n".join(
        [
            "",
            "## Ensemble",
            "",
            f"An ensemble of {ensemble['size']} members ({_members_named(ensemble['members'])}): "
            "this directory's weights are the first member's (the pipeline above scores with it alone); the "
            "others are under `members/`. Palate scores a response with the members' mean reward, each centred "
            "by its `offset` in `config.palate.ensemble`, and gives their standard deviation as its uncertainty.",
            "",
            "| member | trained as | accuracy | loss | step kept |",
            "|---|---|---|---|---|",
            *(
                f"| {index} | {_member_named(m)} | {_format(m['accuracy'])} | {_format(m['loss'])} | {m['best_step']} |"
                for index, m in enumerate(ensemble["members"])
            ),
            f"| ensemble | | {_format(evaluation.get('accuracy'))} | {_format(evaluation.get('loss'))} | |",
            "",
        ]
    )
    _write_replacing(output_dir / "README.md", card)
    return output_dir


def _member_named(member: dict[str, Any]) -> str:
    return f"search trial {member['trial']}" if "trial" in member else f"seed {member['seed']}"


def _members_named(members: list[dict[str, Any]]) -> str:
    """The members as the model card names them: their seeds, or the search trials they were."""
    if all("trial" in member for member in members):
        numbers = ", ".join(str(member["trial"]) for member in members)
        return f"the best {len(members)} trials of a hyperparameter search: {numbers}"
    return f"seeds {', '.join(str(member['seed']) for member in members)}"


def _without_table(calibration: dict[str, Any] | None) -> dict[str, Any] | None:
    if calibration is None:
        return None
    return {key: value for key, value in calibration.items() if key != "calibration_after"}


def _format(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def model_card(summary: dict[str, Any], reward_model: RewardModel) -> str:
    evaluation = summary.get("evaluation") or {}
    data = summary.get("data") or {}
    hyperparameters = summary["hyperparameters"]
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags:",
        "- reward-model",
        "- palate",
        "---",
        "",
        "# Reward model",
        "",
        f"Trained with Palate from human pairwise judgments on top of `{summary['base_model']}` "
        f"({summary['kind']}), as a one-output sequence classifier: a higher score means a better response.",
        "",
        "## Data",
        "",
        "| split | pairs | prompt truncated | response truncated | dropped | identical after truncation |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("train", "eval"):
        report = data.get(split)
        if report:
            lines.append(
                f"| {split} | {report['pairs']} | {report['prompt_truncated']} | {report['response_truncated']} "
                f"| {report['dropped']} | {report['identical_pairs']} |"
            )
    lines += [
        "",
        f"Truncation policy: at most {hyperparameters['max_length']} tokens per sequence; the prompt loses "
        "tokens from its start first, a response is cut from its end only when the prompt is down to its floor "
        f"({hyperparameters.get('min_prompt_tokens') or 'max_length // 4'} tokens). Each (prompt, response) is "
        "fitted alone, whatever it is compared with, so scoring sees it as training did. No pair is dropped.",
        "",
    ]
    if summary["kind"] == "encoder":
        layout = hyperparameters.get("encoder_layout", "pair")
        lines += [
            "Input: prompt and response "
            + (
                "as one segment (no separator token between them)."
                if layout == "single"
                else "as the tokenizer's sentence pair (the response in the second segment)."
            )
            + (
                " The reward is the classification head on the mean of the final hidden states over the real "
                "tokens (`pooling: mean`): Palate's scoring reads it so from `config.json`'s `palate` block; a "
                "plain `pipeline` reads the first token instead and gives other scores."
                if hyperparameters.get("pooling") == "mean"
                else ""
            ),
            "",
        ]
    if summary.get("policy") is not None:
        lines += [
            "Export policy:",
            "",
            "```json",
            json.dumps(summary["policy"], indent=2, default=str),
            "```",
            "",
        ]
    lines += ["## Training", "", "| hyperparameter | value |", "|---|---|"]
    lines += [f"| {name} | {_format(value)} |" for name, value in hyperparameters.items()]
    lines += ["", "## Evaluation (validation pairs)", ""]
    validation = data.get("validation") or {}
    if validation.get("source") == "held_out":
        lines += [
            f"The export had no test split: {validation['prompts']} of the training prompts "
            f"({_format(validation['share'])} of them, seed {validation['seed']}) were held out with their "
            f"{validation['pairs']} pairs, and never trained on.",
            "",
        ]
    selection = summary.get("selection") or {}
    if selection.get("best_step") is not None:
        kept = (
            "the last step's model"
            if selection["metric"] == "last"
            else f"the model of step {selection['best_step']}, the best of {selection['evaluations']} "
            f"evaluations by validation {selection['metric']}"
        )
        stopped = (
            f"; training stopped early at step {selection['stopped_early_at']}"
            if selection.get("stopped_early_at")
            else ""
        )
        lines += [f"These weights are {kept}{stopped}.", ""]
    calibration = summary.get("calibration") or {}
    if calibration:
        lines += [
            f"Calibration: P(a preferred to b) = sigmoid((r_a - r_b) / {calibration['temperature']:.4f}) "
            "(`config.palate.temperature`, fitted on the validation pairs); expected calibration error "
            f"{_format(calibration['ece_before'])} before, {_format(calibration['ece_after'])} after.",
            "",
        ]
    if evaluation:
        lines += [
            "| metric | value |",
            "|---|---|",
            f"| pairs | {evaluation['count']} |",
            f"| accuracy (equal scores count wrong) | {_format(evaluation['accuracy'])} |",
            f"| loss | {_format(evaluation['loss'])} |",
            f"| expected calibration error (confidence against correctness) | {_format(evaluation['ece'])} |",
            f"| Brier score against the vote share | {_format(evaluation.get('brier'))} |",
            f"| reward mean / std | {_format(evaluation['reward_mean'])} / {_format(evaluation['reward_std'])} |",
        ]
        for bucket, values in evaluation.get("by_agreement", {}).items():
            lines.append(f"| accuracy, {bucket} ({values['count']} pairs) | {_format(values['accuracy'])} |")
        bias = evaluation.get("length_bias") or {}
        if bias:
            lines += [
                f"| reward-length correlation (Spearman) | {_format(bias.get('spearman'))} |",
                f"| accuracy when the chosen is shorter | {_format(bias.get('accuracy_when_chosen_shorter'))} |",
                f"| longer response scores higher | {_format(bias.get('longer_scores_higher'))} |",
            ]
    else:
        lines.append("No held-out pairs were given.")
    lines += ["", "## Usage", "", "```python", "from transformers import pipeline", ""]
    lines.append('reward = pipeline("text-classification", model="PATH")')
    lines.append(
        "# A conversation: render it with the saved chat template, as in training."
        if reward_model.kind == "decoder"
        else "# A conversation: render it with the saved chat template, as in training;"
        " plain text: {'text': prompt, 'text_pair': response}."
    )
    lines += [
        "text = reward.tokenizer.apply_chat_template(messages, tokenize=False)",
        'score = reward(text)[0]["score"]  # raw reward',
        "normalised = (score - reward.model.config.reward_mean) / reward.model.config.reward_std",
        "```",
        "",
    ]
    return "\n".join(lines)
