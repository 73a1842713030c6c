from __future__ import annotations

from django.urls import path

from generation import views

urlpatterns = [
    path("projects/<slug:slug>/generation/", views.project_generation, name="project-generation"),
    path(
        "projects/<slug:slug>/generation/jobs/",
        views.project_generation_jobs_live,
        name="project-generation-jobs-live",
    ),
    path(
        "projects/<slug:slug>/generation/jobs/<int:job_id>/cancel/",
        views.project_generation_job_cancel,
        name="project-generation-job-cancel",
    ),
    path(
        "projects/<slug:slug>/generation/jobs/<int:job_id>/rerun/",
        views.project_generation_job_rerun,
        name="project-generation-job-rerun",
    ),
    path(
        "projects/<slug:slug>/generation/systems/<int:system_id>/",
        views.project_generation_system,
        name="project-generation-system",
    ),
    path(
        "projects/<slug:slug>/generation/systems/<int:system_id>/remove/",
        views.project_generation_system_delete,
        name="project-generation-system-delete",
    ),
]
