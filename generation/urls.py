from __future__ import annotations

from django.urls import path

from generation import audit_views, sample_views, views

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
    path(
        "projects/<slug:slug>/generation/best-of-n/",
        sample_views.project_sample_best_of_n,
        name="project-sample-best-of-n",
    ),
    path(
        "projects/<slug:slug>/generation/audits/", audit_views.project_audit_start, name="project-audit-start"
    ),
    path(
        "projects/<slug:slug>/generation/audits/<int:audit_id>/",
        audit_views.project_audit,
        name="project-audit",
    ),
    path(
        "projects/<slug:slug>/generation/audits/<int:audit_id>/live/",
        audit_views.project_audit_live,
        name="project-audit-live",
    ),
    path(
        "projects/<slug:slug>/generation/audits/<int:audit_id>/cancel/",
        audit_views.project_audit_cancel,
        name="project-audit-cancel",
    ),
    path(
        "projects/<slug:slug>/generation/audits/<int:audit_id>/report/",
        audit_views.project_audit_report,
        name="project-audit-report",
    ),
]
