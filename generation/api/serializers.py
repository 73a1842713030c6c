from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from generation.models import GenerationJob, ModelAudit, System
from generation.selectors import audit_figures
from rewardtrain.api.scoring import MessageInput


class SystemInput(serializers.Serializer):
    """A system's settings; on PATCH every field is optional."""

    name = serializers.CharField(max_length=200)
    base_url = serializers.CharField(max_length=500, help_text="The endpoint's /v1 address.")
    model = serializers.CharField(max_length=200)
    temperature = serializers.FloatField(required=False, min_value=0.0, max_value=2.0)
    top_p = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    seed = serializers.IntegerField(required=False, allow_null=True, min_value=-(2**62), max_value=2**62)
    system_prompt = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    api_key_env = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="The NAME of the environment variable that holds the key on the workers; never the key.",
    )
    max_concurrency = serializers.IntegerField(required=False, min_value=1, max_value=64)
    timeout_seconds = serializers.FloatField(required=False, min_value=1.0, max_value=3600.0)
    max_retries = serializers.IntegerField(required=False, min_value=0, max_value=20)


class SystemOutput(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project_id")

    class Meta:
        model = System
        fields = [
            "id",
            "project",
            "name",
            "base_url",
            "model",
            "temperature",
            "top_p",
            "max_tokens",
            "seed",
            "system_prompt",
            "api_key_env",
            "max_concurrency",
            "timeout_seconds",
            "max_retries",
            "created_at",
            "updated_at",
        ]


class PairingInput(serializers.Serializer):
    pairing = serializers.ChoiceField(choices=["all", "random"], required=False, default="all")
    pairs_per_prompt = serializers.IntegerField(required=False, default=0, min_value=0, max_value=100_000)
    cross_system_only = serializers.BooleanField(required=False, default=False)
    seed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**31)


class GenerationJobInput(serializers.Serializer):
    systems = serializers.ListField(
        child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=50
    )
    samples = serializers.IntegerField(
        min_value=1, max_value=1000, help_text="Responses per prompt and system."
    )
    scope = serializers.ChoiceField(choices=GenerationJob.Scope.choices, required=False, default="all")
    scope_value = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=200, help_text="The category or system name."
    )
    pairing = PairingInput(required=False)


class UsageOutput(serializers.Serializer):
    responses = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    truncated = serializers.IntegerField(help_text="Responses cut at max_tokens (finish_reason 'length').")


class GenerationJobOutput(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project_id")
    systems = serializers.SerializerMethodField()
    prompts = serializers.SerializerMethodField()
    usage = serializers.DictField(child=UsageOutput(), help_text="Per system name.")
    errors = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "project",
            "status",
            "systems",
            "scope",
            "scope_value",
            "prompts",
            "samples",
            "pairing",
            "total",
            "generated",
            "skipped",
            "failed",
            "retries",
            "pairs_created",
            "usage",
            "progress",
            "error",
            "errors",
            "cancel_requested",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_systems(self, job: GenerationJob) -> list[int]:
        return sorted(system.pk for system in job.systems.all())

    def get_prompts(self, job: GenerationJob) -> int:
        return len(job.prompt_ids)


class SampleBestOfNInput(serializers.Serializer):
    prompt = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    messages = MessageInput(many=True, required=False, allow_empty=False)
    system = serializers.IntegerField(
        min_value=1, help_text="A system (model endpoint) of the model's project."
    )
    n = serializers.IntegerField(min_value=1, max_value=1000)


class SampleOutput(serializers.Serializer):
    index = serializers.IntegerField()
    response = serializers.CharField()
    finish_reason = serializers.CharField()
    truncated = serializers.BooleanField()
    raw = serializers.FloatField()
    normalised = serializers.FloatField(allow_null=True)
    rank = serializers.IntegerField(help_text="1 is the reward model's choice.")


class SampleBestOfNOutput(serializers.Serializer):
    reward_model = serializers.IntegerField()
    system = serializers.IntegerField()
    samples = SampleOutput(many=True, help_text="All N, in the order generated.")
    best = serializers.IntegerField(help_text="Index of the chosen sample.")
    chosen = SampleOutput()


class AuditInput(serializers.Serializer):
    system = serializers.IntegerField(min_value=1, help_text="A system of the model's project.")
    n_values = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=1000), allow_empty=False, max_length=20
    )
    scope = serializers.ChoiceField(choices=GenerationJob.Scope.choices, required=False, default="all")
    scope_value = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    seed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**31)


class AuditRowOutput(serializers.Serializer):
    n = serializers.IntegerField()
    kl_bound = serializers.FloatField(help_text="log N − (N − 1)/N")
    prompts = serializers.IntegerField()
    mean_score = serializers.FloatField(
        allow_null=True, help_text="The model's mean raw score of its choices."
    )
    judgments = serializers.IntegerField()
    win_rate = serializers.FloatField(allow_null=True, help_text="Share of judgments preferring the choice.")
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)


class AuditFiguresOutput(serializers.Serializer):
    rows = AuditRowOutput(many=True)
    rising_until = serializers.IntegerField(
        allow_null=True, help_text="The N past which the human win rate stops rising."
    )


class AuditOutput(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project_id")
    reward_model = serializers.IntegerField(source="reward_model_id")
    system = serializers.IntegerField(source="system_id", allow_null=True)
    generation_job = serializers.IntegerField(source="generation_job_id", allow_null=True)
    figures = serializers.SerializerMethodField()

    class Meta:
        model = ModelAudit
        fields = [
            "id",
            "project",
            "reward_model",
            "system",
            "generation_job",
            "status",
            "n_values",
            "seed",
            "scored",
            "comparisons_made",
            "progress",
            "error",
            "cancel_requested",
            "created_at",
            "started_at",
            "finished_at",
            "figures",
        ]

    @extend_schema_field(AuditFiguresOutput)
    def get_figures(self, audit: ModelAudit) -> dict:
        return audit_figures(audit=audit)
