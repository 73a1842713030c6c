from __future__ import annotations

from django.urls import path

from generation.views import audits, jobs, sampling

urlpatterns = [
    path("projects/<slug:slug>/generation/", jobs.project_generation, name="project-generation"),
    path(
        "projects/<slug:slug>/generation/jobs/",
        jobs.project_generation_jobs_live,
        name="project-generation-jobs-live",
    ),
    path(
        "projects/<slug:slug>/generation/jobs/<int:job_id>/cancel/",
        jobs.project_generation_job_cancel,
        name="project-generation-job-cancel",
    ),
    path(
        "projects/<slug:slug>/generation/jobs/<int:job_id>/rerun/",
        jobs.project_generation_job_rerun,
        name="project-generation-job-rerun",
    ),
    path(
        "projects/<slug:slug>/generation/systems/<int:system_id>/",
        jobs.project_generation_system,
        name="project-generation-system",
    ),
    path(
        "projects/<slug:slug>/generation/systems/<int:system_id>/remove/",
        jobs.project_generation_system_delete,
        name="project-generation-system-delete",
    ),
    path(
        "projects/<slug:slug>/generation/best-of-n/",
        sampling.project_sample_best_of_n,
        name="project-sample-best-of-n",
    ),
    path("projects/<slug:slug>/generation/audits/", audits.project_audit_start, name="project-audit-start"),
    path(
        "projects/<slug:slug>/generation/audits/<int:audit_id>/",
        audits.project_audit,
        name="project-audit",
    ),
    path(
        "projects/<slug:slug>/generation/audits/<int:audit_id>/live/",
        audits.project_audit_live,
        name="project-audit-live",
    ),
    path(
        "projects/<slug:slug>/generation/audits/<int:audit_id>/cancel/",
        audits.project_audit_cancel,
        name="project-audit-cancel",
    ),
    path(
        "projects/<slug:slug>/generation/audits/<int:audit_id>/report/",
        audits.project_audit_report,
        name="project-audit-report",
    ),
]
