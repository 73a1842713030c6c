"""Plain input and output serializers. No logic: services do the work."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from annotate.models import ImportJob, Membership, Pair, Project, Prompt, ShownChoice
from annotate.selectors import ADMIN


class ProjectConfigInput(serializers.Serializer):
    guidelines = serializers.CharField(required=False, allow_blank=True, max_length=100_000)
    criteria = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, max_length=12
    )
    allowed_choices = serializers.ListField(
        child=serializers.ChoiceField(choices=ShownChoice.choices), required=False
    )
    strength_scale = serializers.IntegerField(required=False, min_value=0, max_value=5)
    rationale = serializers.ChoiceField(choices=Project.Rationale.choices, required=False)
    overlap = serializers.IntegerField(required=False, min_value=1, max_value=100)
    gold_rate = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    lease_seconds = serializers.IntegerField(required=False, min_value=30, max_value=7 * 24 * 3600)
    assignment_order = serializers.ChoiceField(choices=Project.AssignmentOrder.choices, required=False)
    edit_window_seconds = serializers.IntegerField(required=False, min_value=0, max_value=7 * 24 * 3600)
    target_alpha = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    min_gold_accuracy = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    max_position_bias = serializers.FloatField(required=False, min_value=0.5, max_value=1.0)


class ProjectCreateInput(ProjectConfigInput):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80, required=False)


class ProjectUpdateInput(ProjectConfigInput):
    name = serializers.CharField(max_length=200, required=False)


# The two shapes of a project, by the caller's role.
CONFIGURING_ROLES = [Membership.Role.LEAD.value, Membership.Role.ENGINEER.value, ADMIN]
ANNOTATING_ROLES = [Membership.Role.ANNOTATOR.value]

# What annotators see of a project; leads and engineers see these and the configuration.
ANNOTATOR_FIELDS = [
    "id",
    "name",
    "slug",
    "role",
    "guidelines",
    "criteria",
    "allowed_choices",
    "strength_scale",
    "rationale",
]


class ProjectOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            *ANNOTATOR_FIELDS,
            "overlap",
            "gold_rate",
            "lease_seconds",
            "assignment_order",
            "edit_window_seconds",
            "target_alpha",
            "min_gold_accuracy",
            "max_position_bias",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(serializers.ChoiceField(choices=CONFIGURING_ROLES))
    def get_role(self, project: Project) -> str | None:
        return self.context.get("roles", {}).get(project.pk)


class ProjectAnnotatorOutput(serializers.ModelSerializer):
    """What an annotator needs to annotate, and nothing about gold rates or other members."""

    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ANNOTATOR_FIELDS

    @extend_schema_field(serializers.ChoiceField(choices=ANNOTATING_ROLES))
    def get_role(self, project: Project) -> str:
        return Membership.Role.ANNOTATOR


def project_for_caller(*, many: bool = False) -> PolymorphicProxySerializer:
    """For the schema: a project as its caller sees it, annotators the short shape; ``role`` says which."""
    return PolymorphicProxySerializer(
        component_name="ProjectForCaller",
        serializers={
            **{role: ProjectAnnotatorOutput for role in ANNOTATING_ROLES},
            **{role: ProjectOutput for role in CONFIGURING_ROLES},
        },
        resource_type_field_name="role",
        many=many,
    )


class MemberInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    attributes = serializers.DictField(child=serializers.CharField(max_length=200), required=False)


class MemberOutput(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["username", "role", "attributes", "created_at"]


class ImportOptionsInput(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=["", "jsonl", "json", "csv", "parquet"], required=False, default=""
    )
    pairing = serializers.ChoiceField(choices=["all", "random"], required=False, default="all")
    pairs_per_prompt = serializers.IntegerField(required=False, min_value=0, default=0)
    cross_system_only = serializers.BooleanField(required=False, default=False)
    seed = serializers.IntegerField(required=False, default=0)
    label_as = serializers.ChoiceField(choices=["gold", "judgment", "none"], required=False, default="gold")


class ImportInput(ImportOptionsInput):
    file = serializers.FileField()


class ImportUploadUrlInput(serializers.Serializer):
    filename = serializers.CharField(
        max_length=255, help_text="The file's name; its extension names the format."
    )
    size = serializers.IntegerField(min_value=1, help_text="The file's size in bytes.")


class ImportUploadUrlOutput(serializers.Serializer):
    url = serializers.CharField(
        help_text="PUT the file's bytes here (the object store), within expires_in seconds."
    )
    method = serializers.CharField()
    upload = serializers.CharField(help_text="The ticket that starts the import once the file is there.")
    expires_in = serializers.IntegerField()


class ImportFromUploadInput(ImportOptionsInput):
    upload = serializers.CharField(
        help_text="The ticket of /imports/upload-url/, once the file is PUT there."
    )


class ImportJobOutput(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    rows_read = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "project",
            "filename",
            "status",
            "options",
            "progress",
            "rows_read",
            "counts",
            "errors",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_progress(self, job: ImportJob) -> float:
        live = self.context.get("live_progress")
        if live and job.bytes_total:
            return min(1.0, live["bytes"] / job.bytes_total)
        return job.progress

    def get_rows_read(self, job: ImportJob) -> int:
        live = self.context.get("live_progress")
        return live["rows"] if live else job.rows_done


class PromptOutput(serializers.ModelSerializer):
    class Meta:
        model = Prompt
        fields = ["id", "external_id", "content", "messages", "category", "metadata", "created_at"]


class ResponseBrief(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    system = serializers.CharField()
    content = serializers.CharField()


class PairOutput(serializers.ModelSerializer):
    prompt = serializers.IntegerField(source="prompt_id")
    response_a = ResponseBrief()
    response_b = ResponseBrief()

    class Meta:
        model = Pair
        fields = [
            "id",
            "external_id",
            "prompt",
            "response_a",
            "response_b",
            "is_gold",
            "gold_choice",
            "created_at",
        ]


class ModelPredictionOutput(serializers.Serializer):
    reward_model_version = serializers.IntegerField()
    score_a = serializers.FloatField(help_text="Raw reward of response A.")
    score_b = serializers.FloatField(help_text="Raw reward of response B.")
    prefers = serializers.ChoiceField(choices=["a", "b", "tie"])


class PairWithPredictionOutput(PairOutput):
    """The pairs list for leads and engineers: with the active reward model's view of the pair (annotators
    never get scores)."""

    model_prediction = serializers.SerializerMethodField()

    class Meta(PairOutput.Meta):
        fields = [*PairOutput.Meta.fields, "model_prediction"]

    @extend_schema_field(ModelPredictionOutput(allow_null=True))
    def get_model_prediction(self, pair: Pair) -> dict | None:
        """From the context's ``predictions`` (pair id → scores); null when the project has no active model
        or it has not scored both responses."""
        return self.context.get("predictions", {}).get(pair.pk)
