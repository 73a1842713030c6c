"""Projects, their members, and the data annotators judge: prompts, responses, pairs and judgments.

Choices are stored in A/B terms (the pair's own order); what an annotator saw on the left is
recorded separately in ``Judgment.shown_swapped``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Greatest, Least
from django.urls import reverse

from palate.jobs.models import Job


class Choice(models.TextChoices):
    A = "a", "A is better"
    B = "b", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"


class ShownChoice(models.TextChoices):
    """A choice as the annotator makes it, in screen terms."""

    LEFT = "left", "Left is better"
    RIGHT = "right", "Right is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"


def default_allowed_choices() -> list[str]:
    return [choice.value for choice in ShownChoice]


SEARCH_CONFIG = "english"


def search_document_field() -> SearchVectorField:
    """A prompt's or a response's text as a full-text document. Stored rather than an index expression: the
    data browser checks it row by row while it walks pairs in order, and parsing the text again for each
    row cost 0.2 ms a response. Built after an import commits (annotate/services/search_documents.py), not
    as rows are written: parsing made imports several times slower. NULL until then."""
    return SearchVectorField(
        null=True,
        editable=False,
        help_text="The content as a full-text document (the data browser's search); empty until built.",
    )


def search_indexes(table: str, pending_column: str) -> list[models.Index]:
    """The documents' GIN index, and a partial index of the rows whose document is not built yet (the fill
    finds them, and the pairs page counts them, without reading the table)."""
    return [
        GinIndex(fields=["search_document"], name=f"{table}_content_search"),
        models.Index(
            fields=[pending_column],
            name=f"{table}_search_pending",
            condition=Q(search_document__isnull=True),
        ),
    ]


class Project(models.Model):
    class Rationale(models.TextChoices):
        OFF = "off", "Off"
        OPTIONAL = "optional", "Optional"
        REQUIRED = "required", "Required"

    class AssignmentOrder(models.TextChoices):
        DEPTH_FIRST = "depth_first", "Depth first: finish pairs before starting new ones"
        BREADTH_FIRST = "breadth_first", "Breadth first: spread judgments over all pairs"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    criteria = models.JSONField(
        default=list,
        blank=True,
        help_text="Named criteria (e.g. helpfulness); empty means one overall judgment.",
    )
    allowed_choices = models.JSONField(default=default_allowed_choices)
    strength_scale = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(5)],
        help_text="0 turns strength off; N asks for 1..N (slightly / clearly / much better).",
    )
    rationale = models.CharField(max_length=10, choices=Rationale.choices, default=Rationale.OPTIONAL)
    overlap = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Judgments wanted per pair.",
    )
    gold_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of assignments that are gold pairs.",
    )
    lease_seconds = models.PositiveIntegerField(
        default=900,
        validators=[MinValueValidator(30)],
        help_text="How long an assignment is held for its annotator.",
    )
    assignment_order = models.CharField(
        max_length=20, choices=AssignmentOrder.choices, default=AssignmentOrder.DEPTH_FIRST
    )
    assignment_strategy = models.CharField(
        max_length=20,
        choices=[
            ("fill", "Fill pairs in order"),
            ("uncertain_systems", "Prefer pairs whose systems' ratings are least certain"),
            ("uncertain_model", "Prefer pairs where the active reward model is least certain"),
        ],
        default="fill",
    )
    edit_window_seconds = models.PositiveIntegerField(
        default=600, help_text="How long an annotator may change a judgment after submitting it."
    )
    both_bad_as_tie = models.BooleanField(default=True, help_text="Leaderboards count 'both bad' as a tie.")
    target_alpha = models.FloatField(default=0.667, help_text="Krippendorff's alpha the data should reach.")
    min_gold_accuracy = models.FloatField(
        default=0.8, help_text="Annotators below this gold accuracy are flagged."
    )
    max_position_bias = models.FloatField(
        default=0.65, help_text="Annotators who choose the left response more often than this are flagged."
    )
    leaderboard_public_token = models.CharField(
        max_length=64,
        blank=True,
        help_text="When set, /leaderboard/public/<token>/ shows the leaderboard read-only.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="project_overlap_positive"),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="project_gold_rate_share"
            ),
            models.CheckConstraint(
                condition=Q(strength_scale__lte=5), name="project_strength_scale_at_most_5"
            ),
            models.CheckConstraint(
                condition=Q(rationale__in=["off", "optional", "required"]), name="project_rationale_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("project-detail", kwargs={"slug": self.slug})


class Membership(models.Model):
    class Role(models.TextChoices):
        ANNOTATOR = "annotator", "Annotator"
        LEAD = "lead", "Lead"
        ENGINEER = "engineer", "Engineer"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    attributes = models.JSONField(
        default=dict, blank=True, help_text="Key/value data for per-group analysis, e.g. locale or expertise."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "role", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="membership_one_per_user_and_project"),
            models.CheckConstraint(
                condition=Q(role__in=["annotator", "lead", "engineer"]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.role} · {self.project}"


class ProgressDay(models.Model):
    """What an annotator submitted in a project on one day (the server's, settings.TIME_ZONE): the
    progress line's source. Each stored submit adds one to its day's row in the same transaction, so "next"
    reads a row per day worked instead of counting every lease; it outlives the membership, as the
    judgments do."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    submitted = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "annotator", "day"], name="progressday_one_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.annotator} · {self.project} · {self.day}: {self.submitted}"


class Prompt(models.Model):
    # Foreign keys whose own index would repeat the first column of a composite index are not indexed
    # twice: every index is one more write per imported row and per judgment.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts", db_index=False)
    external_id = models.CharField(
        max_length=255, help_text="The id in the imported file, or a content hash."
    )
    content = models.TextField(
        blank=True, help_text="The prompt as text (for conversations, the last user turn)."
    )
    messages = models.JSONField(
        null=True, blank=True, help_text="The conversation as a list of {role, content}, when it is one."
    )
    category = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    fingerprint = models.CharField(
        max_length=40, help_text="sha1 of the prompt's content, for re-import checks."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    search_document = search_document_field()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"], name="prompt_external_id_unique_in_project"
            ),
        ]
        indexes = search_indexes("prompt", "project")

    def __str__(self) -> str:
        return self.external_id

    @property
    def is_conversation(self) -> bool:
        return self.messages is not None


class Response(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses", db_index=False)
    external_id = models.CharField(max_length=255)
    system = models.CharField(max_length=200, blank=True, help_text="The model that produced the response.")
    content = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)
    fingerprint = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)
    search_document = search_document_field()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "external_id"], name="response_external_id_unique_in_prompt"
            ),
        ]
        indexes = search_indexes("response", "prompt")

    def __str__(self) -> str:
        return self.external_id


class Pair(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pairs", db_index=False)
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="pairs")
    response_a = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    response_b = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    external_id = models.CharField(max_length=255, blank=True)
    is_gold = models.BooleanField(default=False)
    gold_choice = models.CharField(max_length=10, choices=Choice.choices, blank=True)
    # Derived from the pair's own rows (judgments, live leases) and recomputed under the pair's row lock
    # whenever they change, so that finding work never counts over the whole project.
    judgment_count = models.PositiveIntegerField(default=0, db_default=0, help_text="Annotators' judgments.")
    slots_taken = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Judgments plus unexpired leases."
    )
    priority = models.FloatField(
        default=0.0,
        db_default=0.0,
        help_text="Set by an uncertainty-seeking assignment strategy: higher is handed out first.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~Q(response_a=F("response_b")), name="pair_responses_differ"),
            # One pair per unordered couple of responses: (x, y) and (y, x) are the same comparison.
            models.UniqueConstraint(
                Least("response_a", "response_b"),
                Greatest("response_a", "response_b"),
                name="pair_unique_couple",
            ),
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=~Q(external_id=""),
                name="pair_external_id_unique_in_project",
            ),
            models.CheckConstraint(
                condition=Q(is_gold=False, gold_choice="")
                | Q(is_gold=True, gold_choice__in=["a", "b", "tie", "both_bad"]),
                name="pair_gold_choice_iff_gold",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "is_gold", "-slots_taken", "id"], name="pair_open_depth_first"),
            models.Index(fields=["project", "is_gold", "slots_taken", "id"], name="pair_open_breadth_first"),
            models.Index(fields=["project", "is_gold", "-priority", "id"], name="pair_open_by_priority"),
        ]

    def __str__(self) -> str:
        return self.external_id or f"pair {self.pk}"


class Judgment(models.Model):
    class Origin(models.TextChoices):
        HUMAN = "human", "Annotator"
        IMPORTED = "imported", "Imported label"

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="judgments", db_index=False)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="judgments",
        db_index=False,
        help_text="Empty for a label imported with the data.",
    )
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.HUMAN)
    choice = models.CharField(max_length=10, choices=Choice.choices)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    criteria = models.JSONField(default=dict, blank=True, help_text="Per-criterion choices in A/B terms.")
    rationale = models.TextField(blank=True)
    shown_swapped = models.BooleanField(
        default=False, help_text="True when response B was shown on the left."
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=100, blank=True, db_default="")
    assignment = models.OneToOneField(
        "Assignment", null=True, blank=True, on_delete=models.SET_NULL, related_name="judgment"
    )
    revision = models.PositiveIntegerField(
        default=1, db_default=1, help_text="1 when first submitted; each edit adds one."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["pair", "annotator"], name="judgment_one_per_annotator_and_pair"),
            models.UniqueConstraint(
                fields=["annotator", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="judgment_idempotency_key_unique",
            ),
            models.UniqueConstraint(
                fields=["pair"],
                condition=Q(annotator__isnull=True),
                name="judgment_one_imported_label_per_pair",
            ),
            models.CheckConstraint(
                condition=Q(choice__in=["a", "b", "tie", "both_bad"]), name="judgment_choice_valid"
            ),
            models.CheckConstraint(
                condition=Q(origin="human", annotator__isnull=False)
                | Q(origin="imported", annotator__isnull=True),
                name="judgment_annotator_iff_human",
            ),
        ]
        indexes = [models.Index(fields=["annotator", "created_at"], name="judgment_annotator_time")]

    def __str__(self) -> str:
        return f"{self.pair} · {self.annotator or 'imported'} · {self.choice}"


class Assignment(models.Model):
    """A lease: one pair handed to one annotator until ``expires_at``. Which response was shown on the left
    is drawn here, so a reload shows the same layout."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"
        # Ended when its annotator was removed, given another role or deactivated: never judged from again.
        RELEASED = "released", "Released"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments", db_index=False
    )
    shown_swapped = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    skip_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["active", "submitted", "skipped", "expired", "released"]),
                name="assignment_status_valid",
            ),
            # At most one live lease per annotator and pair.
            models.UniqueConstraint(
                fields=["pair", "annotator"],
                condition=Q(status="active"),
                name="assignment_one_active_per_pair_and_annotator",
            ),
        ]
        indexes = [
            # Claims look up the annotator's leases here; progress counts their submitted ones by day.
            models.Index(
                fields=["annotator", "project", "status", "closed_at"], name="assignment_annotator_progress"
            ),
            models.Index(fields=["project", "status", "expires_at"], name="assignment_project_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.pair} → {self.annotator} ({self.status})"


class JudgmentRevision(models.Model):
    """What a judgment said before an edit: edits never overwrite silently."""

    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="revisions")
    revision = models.PositiveIntegerField()
    choice = models.CharField(max_length=10, choices=Choice.choices)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    criteria = models.JSONField(default=dict, blank=True)
    rationale = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    recorded_at = models.DateTimeField(help_text="When this version was submitted.")
    replaced_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["judgment", "revision"]
        constraints = [
            models.UniqueConstraint(fields=["judgment", "revision"], name="judgmentrevision_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.judgment} r{self.revision}"


class AgreementSnapshot(models.Model):
    """The quality dashboard's figures for a project, computed by a Celery task when judgments changed."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agreement_snapshots")
    judgment_count = models.PositiveIntegerField()
    last_judgment_at = models.DateTimeField(null=True, blank=True)
    data = models.JSONField(default=dict)
    seconds = models.FloatField(default=0.0, help_text="How long the computation took.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"
        indexes = [models.Index(fields=["project", "-created_at"], name="agreementsnapshot_latest")]

    def __str__(self) -> str:
        return f"{self.project} agreement at {self.created_at:%Y-%m-%d %H:%M}"


class Export(Job):
    """One versioned dataset export, a job of ``palate.jobs``: the policy that made it, what it counted, and its
    files (with sha256) under ``exports/<id>/`` in the exports store. The same data, policy and seed give
    byte-identical files."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    version = models.PositiveIntegerField(help_text="1, 2, 3… per project.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    policy = models.JSONField(
        default=dict, help_text="Aggregation policy, split and columns, with defaults filled in."
    )
    formats = models.JSONField(default=list, help_text="e.g. ['jsonl', 'parquet', 'hf']")
    counts = models.JSONField(default=dict, blank=True)
    files = models.JSONField(default=dict, blank=True, help_text="{name: {path, bytes, rows, sha256}}")

    class Meta(Job.Meta):
        ordering = ["-created_at"]
        constraints = [
            *Job.Meta.constraints,
            models.UniqueConstraint(fields=["project", "version"], name="export_version_unique_in_project"),
        ]

    def __str__(self) -> str:
        return f"{self.project} export v{self.version} ({self.status})"


class ImportJob(Job):
    """One import of one file; large files run as a Celery job (``palate.jobs``) and report progress here."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    filename = models.CharField(max_length=255)
    stored_path = models.CharField(
        max_length=500, blank=True, help_text="The upload, while the job waits or runs."
    )
    options = models.JSONField(default=dict, blank=True)
    rows_done = models.PositiveBigIntegerField(default=0)
    bytes_total = models.PositiveBigIntegerField(default=0)
    bytes_done = models.PositiveBigIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True, help_text="Every error, with its place in the file.")

    class Meta(Job.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.status})"


class ProjectApiToken(models.Model):
    """A secret that scores with one project's reward models over the API and does nothing else: it acts as
    nobody (not as the lead who made it), so every other endpoint refuses it.

    Only the SHA-256 hash of the secret is stored (a check constraint keeps it a hash), with its first
    characters to recognise it by; the secret itself is shown once, when the token is made."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'best-of-n sampler'.")
    prefix = models.CharField(max_length=12, help_text="The secret's first characters, shown in lists.")
    secret_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the secret, hex.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(
        null=True, blank=True, help_text="Updated at most once a minute, not on every request."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(secret_hash__regex=r"^[0-9a-f]{64}$"), name="projectapitoken_secret_is_hashed"
            ),
            models.UniqueConstraint(
                fields=["project", "name"],
                condition=Q(revoked_at__isnull=True),
                name="projectapitoken_name_unique_among_unrevoked",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) · {self.project}"

    def state(self, now) -> str:
        """The token's state at ``now`` (timezone-aware): "active", "expired" or "revoked"."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


# Flags and adjudications live in their own module; imported here so that Django registers them.
from annotate.review_models import Adjudication, PairFlag  # noqa: E402, F401
