from __future__ import annotations

from django.apps import AppConfig


class RewardtrainConfig(AppConfig):
    name = "rewardtrain"
    verbose_name = "Reward-model training"

    def ready(self) -> None:
        from django.core import checks

        from palate.jobs.services import job_kind_register
        from rewardtrain.base_models import base_models_check
        from rewardtrain.services.runs import TRAINING_RUNS
        from rewardtrain.services.scoring import SCORING_JOBS
        from rewardtrain.services.search import SEARCH_TRIALS

        job_kind_register(TRAINING_RUNS)
        job_kind_register(SCORING_JOBS)
        job_kind_register(SEARCH_TRIALS)
        checks.register(base_models_check)
