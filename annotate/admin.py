from __future__ import annotations

from django.contrib import admin

from annotate.models import (
    Adjudication,
    ImportJob,
    Judgment,
    Membership,
    Pair,
    PairFlag,
    Project,
    ProjectApiToken,
    Prompt,
    Response,
)
from annotate.services.api_tokens import api_token_revoke


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "overlap", "gold_rate", "strength_scale", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def save_model(self, request, obj, form, change):
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "attributes", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]
    autocomplete_fields = ["user", "project"]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["external_id", "project", "category", "created_at"]
    list_filter = ["project", "category"]
    search_fields = ["external_id", "content"]
    list_select_related = ["project"]
    raw_id_fields = ["project"]


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["external_id", "system", "prompt", "created_at"]
    list_filter = ["system"]
    search_fields = ["external_id", "content"]
    raw_id_fields = ["prompt"]


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ["id", "external_id", "project", "prompt", "is_gold", "gold_choice", "created_at"]
    list_filter = ["project", "is_gold"]
    search_fields = ["external_id"]
    raw_id_fields = ["project", "prompt", "response_a", "response_b"]


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "annotator", "origin", "choice", "strength", "shown_swapped", "created_at"]
    list_filter = ["origin", "choice"]
    raw_id_fields = ["pair", "annotator"]


@admin.register(PairFlag)
class PairFlagAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "annotator", "category", "created_at", "resolution", "resolved_at"]
    list_filter = ["category", "resolution"]
    raw_id_fields = ["pair", "annotator", "resolved_by"]


@admin.register(Adjudication)
class AdjudicationAdmin(admin.ModelAdmin):
    list_display = ["pair", "label", "decided_by", "decided_at"]
    list_filter = ["label"]
    raw_id_fields = ["pair", "decided_by"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["filename", "project", "status", "rows_done", "created_by", "created_at", "finished_at"]
    list_filter = ["status"]
    raw_id_fields = ["project", "created_by"]


@admin.register(ProjectApiToken)
class ProjectApiTokenAdmin(admin.ModelAdmin):
    """Read and revoke only: a token is made on the project's members page or through the API, which show
    its secret once (the admin has nowhere to show it)."""

    list_display = [
        "name",
        "prefix",
        "project",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["project"]
    search_fields = ["name", "prefix", "project__name"]
    list_select_related = ["project", "created_by"]
    readonly_fields = [
        "project",
        "name",
        "prefix",
        "secret_hash",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "revoked_by",
    ]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token, revoked_by=request.user)
