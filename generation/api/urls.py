from __future__ import annotations

from django.urls import path

from generation.api import views

urlpatterns = [
    path("projects/<int:project_id>/systems/", views.ProjectSystemsApi.as_view(), name="api-systems"),
    path("systems/<int:system_id>/", views.SystemDetailApi.as_view(), name="api-system"),
    path(
        "projects/<int:project_id>/generation-jobs/",
        views.ProjectGenerationJobsApi.as_view(),
        name="api-generation-jobs",
    ),
    path("generation-jobs/<int:job_id>/", views.GenerationJobDetailApi.as_view(), name="api-generation-job"),
    path(
        "generation-jobs/<int:job_id>/cancel/",
        views.GenerationJobCancelApi.as_view(),
        name="api-generation-job-cancel",
    ),
    path(
        "generation-jobs/<int:job_id>/rerun/",
        views.GenerationJobRerunApi.as_view(),
        name="api-generation-job-rerun",
    ),
    path(
        "reward-models/<int:model_id>/sample-best-of-n/",
        views.RewardModelSampleBestOfNApi.as_view(),
        name="api-reward-model-sample-best-of-n",
    ),
    path(
        "reward-models/<int:model_id>/audits/",
        views.RewardModelAuditCreateApi.as_view(),
        name="api-reward-model-audits",
    ),
    path("audits/<int:audit_id>/", views.AuditDetailApi.as_view(), name="api-audit"),
    path("audits/<int:audit_id>/cancel/", views.AuditCancelApi.as_view(), name="api-audit-cancel"),
    path("audits/<int:audit_id>/report/", views.AuditReportApi.as_view(), name="api-audit-report"),
]
