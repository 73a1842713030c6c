"""Systems as model endpoints (OpenAI-compatible chat completions) and the jobs that generate candidate
responses with them. A generated response is an ordinary ``annotate.Response`` whose ``system`` is the
system's name and whose metadata records how it was made (``generation.services.jobs``)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from annotate.models import Project
from palate.jobs.models import Job

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class System(models.Model):
    """An OpenAI-compatible chat-completions endpoint with its sampling settings. The API key is never
    stored: ``api_key_env`` names the environment variable that holds it on the workers."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="generation_systems")
    name = models.CharField(
        max_length=200, help_text="The system name its responses carry (leaderboards group by it)."
    )
    # Not a URLField: its validator refuses host names without a dot, such as a compose service's ("vllm").
    base_url = models.CharField(max_length=500, help_text="e.g. http://127.0.0.1:8080/v1")
    model = models.CharField(max_length=200, help_text="The model name the endpoint expects.")
    temperature = models.FloatField(default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    top_p = models.FloatField(default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    max_tokens = models.PositiveIntegerField(default=512, validators=[MinValueValidator(1)])
    seed = models.BigIntegerField(
        null=True, blank=True, help_text="Sample k of a prompt is asked with seed + k, where supported."
    )
    system_prompt = models.TextField(blank=True)
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[RegexValidator(ENV_NAME, "an environment variable's name: letters, digits, _")],
        help_text="The environment variable holding the API key on the workers; empty for none.",
    )
    max_concurrency = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(64)], help_text="Requests at once."
    )
    timeout_seconds = models.FloatField(default=120.0, validators=[MinValueValidator(1.0)])
    max_retries = models.PositiveSmallIntegerField(
        default=4,
        validators=[MaxValueValidator(20)],
        help_text="Retries of a request on 429, 5xx, time-outs and refused connections.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="system_name_unique_in_project"),
            models.CheckConstraint(
                condition=Q(temperature__gte=0) & Q(temperature__lte=2), name="system_temperature_range"
            ),
            models.CheckConstraint(condition=Q(top_p__gte=0) & Q(top_p__lte=1), name="system_top_p_range"),
            models.CheckConstraint(condition=Q(max_tokens__gte=1), name="system_max_tokens_positive"),
            models.CheckConstraint(
                condition=Q(max_concurrency__gte=1) & Q(max_concurrency__lte=64),
                name="system_max_concurrency_range",
            ),
            models.CheckConstraint(
                condition=Q(api_key_env="") | Q(api_key_env__regex=ENV_NAME), name="system_api_key_env_name"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.model})"


class GenerationJob(Job):
    """Generates ``samples`` responses per prompt and system, then pairs each prompt's generated responses
    by the import's pairing rule. A job of ``palate.jobs``: claimed, heartbeating, cancellable; an attempt
    skips what is already stored, so a restarted job goes on where it stopped."""

    class Scope(models.TextChoices):
        ALL = "all", "All prompts"
        CATEGORY = "category", "The prompts of a category"
        WITHOUT_SYSTEM = "without_system", "Prompts without responses from a system"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="generation_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    systems = models.ManyToManyField(System, related_name="+")
    scope = models.CharField(max_length=20, choices=Scope.choices, default=Scope.ALL)
    scope_value = models.CharField(
        max_length=200, blank=True, help_text="The category, or the system name, the scope names."
    )
    prompt_ids = models.JSONField(default=list, help_text="The prompts chosen when the job was created.")
    samples = models.PositiveSmallIntegerField(default=1, help_text="Responses per prompt and system.")
    pairing = models.JSONField(
        default=dict,
        help_text="The import's pairing options: pairing, pairs_per_prompt, cross_system_only, seed.",
    )
    make_pairs = models.BooleanField(
        default=True, help_text="False for an audit's samples: it pairs them itself."
    )
    total = models.PositiveIntegerField(default=0, help_text="prompts × systems × samples")
    generated = models.PositiveIntegerField(default=0, help_text="Responses this job generated.")
    skipped = models.PositiveIntegerField(default=0, help_text="Responses already stored (earlier attempts).")
    failed = models.PositiveIntegerField(default=0, help_text="Requests the endpoint refused.")
    retries = models.PositiveIntegerField(default=0, help_text="Requests sent again (429, 5xx, time-outs).")
    pairs_created = models.PositiveIntegerField(default=0)
    usage = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per system name: responses, prompt_tokens, completion_tokens, truncated.",
    )
    errors = models.JSONField(default=list, blank=True, help_text="The first refused requests, with why.")
    cancel_requested = models.BooleanField(default=False)
    log = models.TextField(blank=True)

    class Meta(Job.Meta):
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"generation job {self.pk} ({self.status})"


class ModelAudit(Job):
    """Does the reward model's best of N beat an independent sample in people's eyes? For each chosen prompt
    a system generates max(N) + 1 samples (through a generation job that makes no pairs); the model scores
    them; for each N its best of the first N is paired with the last sample, and annotators judge those pairs
    blind like any other. The figures are read from their judgments (``generation.selectors``)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="reward_model_audits")
    reward_model = models.ForeignKey(
        "rewardtrain.RewardModel", on_delete=models.CASCADE, related_name="audits"
    )
    system = models.ForeignKey(System, null=True, on_delete=models.SET_NULL, related_name="audits")
    generation_job = models.OneToOneField(
        GenerationJob, null=True, on_delete=models.SET_NULL, related_name="audit"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    n_values = models.JSONField(default=list, help_text="The values of N, ascending, e.g. [1, 2, 4, 8].")
    sample_ids = models.JSONField(
        default=list, help_text="External ids of samples 0..max(N) (the last is the independent sample)."
    )
    seed = models.IntegerField(default=0, help_text="Draws which response of each pair is A.")
    scored = models.PositiveIntegerField(default=0)
    comparisons_made = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    log = models.TextField(blank=True)

    class Meta(Job.Meta):
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"audit {self.pk} of {self.reward_model} ({self.status})"


class AuditComparison(models.Model):
    """For one prompt and one N: the model's best of the first N samples against the independent sample,
    as a pair annotators judge (one pair may serve several N when the best does not change)."""

    audit = models.ForeignKey(ModelAudit, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey("annotate.Prompt", on_delete=models.CASCADE, related_name="+")
    n = models.PositiveSmallIntegerField()
    chosen = models.ForeignKey("annotate.Response", on_delete=models.CASCADE, related_name="+")
    reference = models.ForeignKey("annotate.Response", on_delete=models.CASCADE, related_name="+")
    pair = models.ForeignKey("annotate.Pair", on_delete=models.CASCADE, related_name="+")
    chosen_score = models.FloatField(help_text="The reward model's raw score of its choice.")

    class Meta:
        ordering = ["audit", "n", "prompt"]
        constraints = [
            models.UniqueConstraint(
                fields=["audit", "prompt", "n"], name="auditcomparison_one_per_prompt_and_n"
            ),
            models.CheckConstraint(condition=Q(n__gte=1), name="auditcomparison_n_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.audit} · prompt {self.prompt_id} · N={self.n}"
