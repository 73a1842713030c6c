"""Input and output shapes of the training API. No logic: the services validate."""

from __future__ import annotations

from rest_framework import serializers

from rewardtrain.models import RewardModel, SearchTrial, TrainingRun


class TrainingRunCreateInput(serializers.Serializer):
    base_model = serializers.CharField(
        required=False,
        help_text="The name of a base model the operator installed (TRAINING_BASE_MODELS, 'minilm' by default; "
        "a 400 lists them) or, where TRAINING_HUB_MODELS is on, any Hugging Face id (owner/name); never a path. "
        "Give this or base_reward_model.",
    )
    base_reward_model = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**63 - 1,
        help_text="The id of a reward model of this project to continue training from. Give this or base_model.",
    )
    export = serializers.IntegerField(
        required=False, allow_null=True, help_text="A succeeded preference export of this project."
    )
    policy = serializers.JSONField(
        required=False, allow_null=True, help_text="An export policy: the worker makes the export first."
    )
    hyperparameters = serializers.JSONField(
        required=False, default=dict, help_text="See TrainConfig; missing keys take defaults."
    )
    allow_below_target = serializers.BooleanField(
        required=False, default=False, help_text="Start even when agreement misses the project's targets."
    )
    time_limit_seconds = serializers.IntegerField(
        required=False, allow_null=True, help_text="Hard limit of one attempt."
    )
    mode = serializers.ChoiceField(
        choices=TrainingRun.Mode.choices,
        required=False,
        default=TrainingRun.Mode.TRAIN,
        help_text="'train' (default) trains once; 'search' tries hyperparameters with Optuna and keeps the best "
        "trial's model.",
    )
    search = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="Search mode: {trials, parallel, time_budget_seconds, metric, seed, prune_after_trials, "
        "prune_warmup_steps, space: {name: [low, high] | null}}; missing keys take defaults (docs/training.md).",
    )


class SearchTrialOutput(serializers.ModelSerializer):
    validation = serializers.SerializerMethodField(
        help_text="The trial's final validation accuracy and loss."
    )

    class Meta:
        model = SearchTrial
        fields = [
            "number",
            "status",
            "outcome",
            "params",
            "value",
            "validation",
            "intermediate",
            "pruned_at_step",
            "step",
            "total_steps",
            "worker",
            "attempts",
            "error",
            "started_at",
            "finished_at",
        ]

    def get_validation(self, trial: SearchTrial) -> dict[str, float | None]:
        evaluation = (trial.result or {}).get("evaluation") or {}
        return {"accuracy": evaluation.get("accuracy"), "loss": evaluation.get("loss")}


class TrainingRunOutput(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    reward_model = serializers.SerializerMethodField()
    trials = SearchTrialOutput(many=True, read_only=True, help_text="Search mode: its trials, by number.")

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "project",
            "status",
            "trigger",
            "export",
            "policy",
            "base_model",
            "base_reward_model",
            "hyperparameters",
            "mode",
            "search",
            "trials",
            "step",
            "total_steps",
            "epoch",
            "eta_seconds",
            "metrics",
            "evaluation",
            "device",
            "worker",
            "attempts",
            "max_attempts",
            "cancel_requested",
            "time_limit_seconds",
            "heartbeat_at",
            "error",
            "traceback",
            "log",
            "artifact_path",
            "reward_model",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_reward_model(self, run: TrainingRun) -> int | None:
        model = getattr(run, "reward_model", None)
        return model.pk if model is not None else None


class TrainingRunSummaryOutput(TrainingRunOutput):
    """A run in a list: without the metrics history, the log and the traceback."""

    class Meta(TrainingRunOutput.Meta):
        fields = [
            name
            for name in TrainingRunOutput.Meta.fields
            if name not in {"metrics", "log", "traceback", "evaluation", "trials"}
        ]


class RewardModelOutput(serializers.ModelSerializer):
    class Meta:
        model = RewardModel
        fields = ["id", "project", "run", "version", "path", "metrics", "is_active", "created_at"]
