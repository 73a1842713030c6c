"""Celery entry points: they take ids and call a service.

``training_run_task`` runs on the ``gpu`` queue (CELERY_TASK_ROUTES sends ``rewardtrain.tasks.*`` there);
its time limits come from the run (``training_run_enqueue`` passes them to ``apply_async``). Start the gpu
worker with ``--concurrency 1 --prefetch-multiplier 1`` (README, "Training reward models"). The reaper and
retraining tasks are light: they are routed to the ``default`` queue by name in settings.
"""

from __future__ import annotations

from celery import shared_task

from rewardtrain.services.runs import training_retrain_due, training_run_execute, training_runs_reap


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def training_run_task(self, run_id: int) -> None:
    # A redelivered message finds the run claimed (or finished) and returns: the claim is the guard.
    training_run_execute(run_id=run_id, worker_name=self.request.hostname or "worker")


@shared_task
def training_runs_reap_task() -> None:
    training_runs_reap()


@shared_task
def training_retrain_due_task() -> None:
    training_retrain_due()
