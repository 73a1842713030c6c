from __future__ import annotations

from django.urls import path

from rewardtrain.api import views

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
]
