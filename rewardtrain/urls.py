from __future__ import annotations

from django.urls import path

from rewardtrain import views
from rewardtrain.views import scoring

urlpatterns = [
    path("projects/<slug:slug>/training/", views.project_training, name="project-training"),
    path("projects/<slug:slug>/training/runs/", views.project_training_runs, name="project-training-runs"),
    path("projects/<slug:slug>/training/retraining/", views.project_retraining, name="project-retraining"),
    path(
        "projects/<slug:slug>/training/<int:run_id>/", views.project_training_run, name="project-training-run"
    ),
    path(
        "projects/<slug:slug>/training/<int:run_id>/live/",
        views.project_training_run_live,
        name="project-training-run-live",
    ),
    path(
        "projects/<slug:slug>/training/<int:run_id>/cancel/",
        views.project_training_run_cancel,
        name="project-training-run-cancel",
    ),
    path(
        "projects/<slug:slug>/training/models/<int:model_id>/activate/",
        views.project_reward_model_activate,
        name="project-reward-model-activate",
    ),
    path(
        "projects/<slug:slug>/training/models/<int:model_id>/score/",
        views.project_reward_model_score,
        name="project-reward-model-score",
    ),
    path(
        "projects/<slug:slug>/training/models/<int:model_id>/scoring/",
        views.project_scoring_job_live,
        name="project-scoring-job-live",
    ),
    path("projects/<slug:slug>/scoring/", scoring.project_scoring, name="project-scoring"),
]
