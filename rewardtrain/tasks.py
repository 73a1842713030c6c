"""Celery entry points: they take ids and call a service.

``training_run_task`` runs on the ``gpu`` queue (CELERY_TASK_ROUTES sends ``rewardtrain.tasks.*`` there);
its time limits come from the run (``training_run_enqueue`` passes them to ``apply_async``). Start the gpu
worker with ``--concurrency 1 --prefetch-multiplier 1`` (docs/training.md). The retraining
task is light: it is routed to the ``default`` queue by name in settings. Runs and scoring jobs are jobs of
``palate.jobs``: late acknowledgement, redelivery when their process dies, and a claim that makes a second
delivery harmless (or takes the job over when its worker was lost); one reaper serves every job type.
"""

from __future__ import annotations

from celery import shared_task

from rewardtrain.services.run_execution import training_run_execute
from rewardtrain.services.runs import training_retrain_due


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def training_run_task(self, run_id: int) -> None:
    training_run_execute(run_id=run_id, worker_name=self.request.hostname or "worker")


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def search_trial_task(self, trial_id: int) -> None:
    from rewardtrain.services.search import search_trial_execute

    search_trial_execute(trial_id=trial_id, worker_name=self.request.hostname or "worker")


@shared_task
def training_retrain_due_task() -> None:
    training_retrain_due()


@shared_task(ignore_result=False, acks_late=False)
def reward_model_score_task(
    reward_model_id: int, path: str, prompt: str | list[dict[str, str]], responses: list[str]
) -> dict:
    # Not acks_late: a request whose caller has given up is not worth running twice.
    from rewardtrain.services.scoring import scores_compute

    return scores_compute(reward_model_id=reward_model_id, path=path, prompt=prompt, responses=responses)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def scoring_job_task(self, job_id: int) -> None:
    from rewardtrain.services.scoring import scoring_job_execute

    scoring_job_execute(job_id=job_id, worker=self.request.hostname or "worker")


@shared_task
def model_priorities_refresh_due_task() -> None:
    from rewardtrain.services.assisted import model_priorities_refresh_due

    model_priorities_refresh_due()
