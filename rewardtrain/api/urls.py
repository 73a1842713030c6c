from __future__ import annotations

from django.urls import path

from rewardtrain.api import scoring, views

urlpatterns = [
    path(
        "projects/<int:project_id>/training-runs/",
        views.ProjectTrainingRunsApi.as_view(),
        name="api-training-runs",
    ),
    path("training-runs/<int:run_id>/", views.TrainingRunDetailApi.as_view(), name="api-training-run"),
    path(
        "training-runs/<int:run_id>/cancel/",
        views.TrainingRunCancelApi.as_view(),
        name="api-training-run-cancel",
    ),
    path(
        "projects/<int:project_id>/reward-models/",
        views.ProjectRewardModelsApi.as_view(),
        name="api-reward-models",
    ),
    path(
        "reward-models/<int:model_id>/activate/",
        views.RewardModelActivateApi.as_view(),
        name="api-reward-model-activate",
    ),
    # Scoring (rewardtrain/api/scoring.py).
    path(
        "reward-models/<int:model_id>/score/",
        scoring.RewardModelScoreApi.as_view(),
        name="api-reward-model-score",
    ),
    path(
        "reward-models/<int:model_id>/best-of-n/",
        scoring.RewardModelBestOfNApi.as_view(),
        name="api-reward-model-best-of-n",
    ),
    path(
        "projects/<int:project_id>/reward-models/active/score/",
        scoring.ActiveRewardModelScoreApi.as_view(),
        name="api-active-reward-model-score",
    ),
    path(
        "projects/<int:project_id>/reward-models/active/best-of-n/",
        scoring.ActiveRewardModelBestOfNApi.as_view(),
        name="api-active-reward-model-best-of-n",
    ),
    path(
        "projects/<int:project_id>/reward-models/active/pair-predictions/",
        scoring.ActivePairPredictionsApi.as_view(),
        name="api-active-pair-predictions",
    ),
    path(
        "reward-models/<int:model_id>/scoring-jobs/",
        scoring.ScoringJobCreateApi.as_view(),
        name="api-scoring-job-create",
    ),
    path("scoring-jobs/<int:job_id>/", scoring.ScoringJobDetailApi.as_view(), name="api-scoring-job"),
]
