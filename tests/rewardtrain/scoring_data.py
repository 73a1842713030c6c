"""A tiny reward model saved as a training artifact (with the reward mean/std that normalisation reads) and
the rows that make it a project's RewardModel."""

from __future__ import annotations

from pathlib import Path

from annotate.models import Export, Project
from rewardtrain.models import RewardModel, TrainingRun
from rewardtrain.services.run_artifacts import run_model_upload

REWARD_MEAN, REWARD_STD = 0.25, 2.0


def save_tiny_reward_model(base: str, directory: Path) -> str:
    from rewardtrain.training.artifacts import save_reward_model
    from rewardtrain.training.config import TrainConfig
    from rewardtrain.training.model import load_reward_model

    model = load_reward_model(base, device="cpu")
    evaluation = {
        "count": 0,
        "accuracy": None,
        "loss": None,
        "ece": None,
        "reward_mean": REWARD_MEAN,
        "reward_std": REWARD_STD,
    }
    save_reward_model(
        model,
        directory,
        config=TrainConfig.from_dict({"base_model": base, "max_length": 64}),
        evaluation=evaluation,
    )
    return str(directory)


def reward_model_row(
    project: Project, path: str, *, version: int = 1, active: bool = True, export: Export | None = None
) -> RewardModel:
    """The model saved in the local folder ``path``, stored as its run's model in the artifacts store.
    ``export``: what its run trained on (its test split is what the run held out); None records no split."""
    run = TrainingRun.objects.create(
        project=project, export=export, base_model="tiny", status=TrainingRun.Status.SUCCEEDED
    )
    stored, digest = run_model_upload(run_id=run.pk, local=Path(path))
    return RewardModel.objects.create(
        run=run, project=project, version=version, path=stored, content_hash=digest, is_active=active,
        metrics={"reward_mean": REWARD_MEAN, "reward_std": REWARD_STD},
    )  # fmt: skip
