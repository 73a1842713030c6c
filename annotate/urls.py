from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from annotate.views import (
    exports,
    imports,
    leaderboard,
    login,
    members,
    pairs,
    project_settings,
    projects,
    quality,
    review,
    workspace,
)

urlpatterns = [
    path("login/", login.PalateLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", projects.home, name="home"),
    path("projects/new/", project_settings.project_new, name="project-new"),
    path("projects/<slug:slug>/", projects.project_detail, name="project-detail"),
    path("projects/<slug:slug>/annotate/", workspace.project_annotate, name="project-annotate"),
    path("projects/<slug:slug>/settings/", project_settings.project_settings, name="project-settings"),
    path("projects/<slug:slug>/history/", review.project_history, name="project-history"),
    path(
        "projects/<slug:slug>/history/<int:judgment_id>/edit/",
        review.project_history_edit,
        name="project-history-edit",
    ),
    path("projects/<slug:slug>/flags/", review.project_flags, name="project-flags"),
    path(
        "projects/<slug:slug>/flags/<int:flag_id>/dismiss/",
        review.project_flag_dismiss,
        name="project-flag-dismiss",
    ),
    path("projects/<slug:slug>/pairs/<int:pair_id>/settle/", review.pair_settle, name="project-pair-settle"),
    path("projects/<slug:slug>/members/", members.project_members, name="project-members"),
    path("projects/<slug:slug>/members/invite/", members.project_member_invite, name="project-member-invite"),
    path(
        "projects/<slug:slug>/members/<str:username>/remove/",
        members.project_member_remove,
        name="project-member-remove",
    ),
    path(
        "projects/<slug:slug>/members/api-tokens/",
        members.project_api_token_create,
        name="project-api-token-create",
    ),
    path(
        "projects/<slug:slug>/members/api-tokens/<int:token_id>/revoke/",
        members.project_api_token_revoke,
        name="project-api-token-revoke",
    ),
    path("projects/<slug:slug>/import/", imports.project_import, name="project-import"),
    path("projects/<slug:slug>/import/jobs/", imports.project_import_jobs, name="project-import-jobs"),
    path("projects/<slug:slug>/exports/", exports.project_exports, name="project-exports"),
    path("projects/<slug:slug>/exports/list/", exports.project_exports_list, name="project-exports-list"),
    path("projects/<slug:slug>/leaderboard/", leaderboard.project_leaderboard, name="project-leaderboard"),
    path(
        "projects/<slug:slug>/leaderboard/public-link/",
        leaderboard.project_leaderboard_public_link,
        name="project-leaderboard-public-link",
    ),
    path("leaderboard/public/<str:token>/", leaderboard.leaderboard_public, name="leaderboard-public"),
    path("projects/<slug:slug>/pairs/", pairs.project_pairs, name="project-pairs"),
    path("projects/<slug:slug>/pairs/<int:pair_id>/", pairs.project_pair, name="project-pair"),
    path("projects/<slug:slug>/quality/", quality.project_quality, name="project-quality"),
    path(
        "projects/<slug:slug>/quality/refresh/",
        quality.project_quality_refresh,
        name="project-quality-refresh",
    ),
    path(
        "projects/<slug:slug>/quality/pairs/<int:pair_id>/",
        quality.project_quality_pair,
        name="project-quality-pair",
    ),
    path(
        "projects/<slug:slug>/quality/<slug:table>.csv",
        quality.project_quality_csv,
        name="project-quality-csv",
    ),
]
