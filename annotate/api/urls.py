from __future__ import annotations

from django.urls import path

from annotate.api import agreement_views, export_views, review_views, token_views, views, workspace_views
from annotate.api.leaderboard_views import ProjectLeaderboardApi

urlpatterns = [
    # The annotators' two endpoints come first: every judgment resolves both, and Django tries the patterns
    # in order.
    path("projects/<int:project_id>/next/", workspace_views.NextPairApi.as_view(), name="api-next"),
    path("judgments/", workspace_views.JudgmentSubmitApi.as_view(), name="api-judgments"),
    path(
        "projects/<int:project_id>/progress/",
        workspace_views.AnnotatorProgressApi.as_view(),
        name="api-progress",
    ),
    path("projects/", views.ProjectListCreateApi.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", views.ProjectDetailApi.as_view(), name="api-project"),
    path("projects/<int:project_id>/members/", views.ProjectMembersApi.as_view(), name="api-members"),
    path(
        "projects/<int:project_id>/members/<str:username>/",
        views.ProjectMemberDeleteApi.as_view(),
        name="api-member",
    ),
    path(
        "projects/<int:project_id>/api-tokens/",
        token_views.ProjectApiTokensApi.as_view(),
        name="api-api-tokens",
    ),
    path(
        "projects/<int:project_id>/api-tokens/<int:token_id>/",
        token_views.ProjectApiTokenRevokeApi.as_view(),
        name="api-api-token",
    ),
    path("projects/<int:project_id>/imports/", views.ProjectImportApi.as_view(), name="api-imports"),
    path("projects/<int:project_id>/prompts/", views.PromptListApi.as_view(), name="api-prompts"),
    path("projects/<int:project_id>/pairs/", views.PairListApi.as_view(), name="api-pairs"),
    path("imports/<int:job_id>/", views.ImportJobDetailApi.as_view(), name="api-import"),
    path(
        "projects/<int:project_id>/judgments/recent/",
        workspace_views.RecentJudgmentsApi.as_view(),
        name="api-judgments-recent",
    ),
    path("judgments/<int:judgment_id>/", workspace_views.JudgmentEditApi.as_view(), name="api-judgment"),
    path(
        "assignments/<int:assignment_id>/skip/",
        workspace_views.AssignmentSkipApi.as_view(),
        name="api-assignment-skip",
    ),
    path(
        "assignments/<int:assignment_id>/flag/",
        review_views.AssignmentFlagApi.as_view(),
        name="api-assignment-flag",
    ),
    path(
        "projects/<int:project_id>/judgments/mine/",
        review_views.JudgmentHistoryApi.as_view(),
        name="api-judgments-mine",
    ),
    path("projects/<int:project_id>/flags/", review_views.ProjectFlagsApi.as_view(), name="api-flags"),
    path(
        "projects/<int:project_id>/flags/<int:flag_id>/dismiss/",
        review_views.FlagDismissApi.as_view(),
        name="api-flag-dismiss",
    ),
    path(
        "projects/<int:project_id>/pairs/<int:pair_id>/adjudication/",
        review_views.PairAdjudicationApi.as_view(),
        name="api-pair-adjudication",
    ),
    path("projects/<int:project_id>/exports/", export_views.ProjectExportsApi.as_view(), name="api-exports"),
    path("exports/<int:export_id>/", export_views.ExportDetailApi.as_view(), name="api-export"),
    path(
        "exports/<int:export_id>/download/",
        export_views.ExportDownloadApi.as_view(),
        name="api-export-download",
    ),
    path("projects/<int:project_id>/leaderboard/", ProjectLeaderboardApi.as_view(), name="api-leaderboard"),
    path(
        "projects/<int:project_id>/agreement/",
        agreement_views.ProjectAgreementApi.as_view(),
        name="api-agreement",
    ),
    path(
        "projects/<int:project_id>/agreement/refresh/",
        agreement_views.ProjectAgreementRefreshApi.as_view(),
        name="api-agreement-refresh",
    ),
]
