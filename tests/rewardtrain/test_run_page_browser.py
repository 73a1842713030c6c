"""The run page's validation report in Debian's Chromium: where the validation pairs came from, the step whose
model was kept, the calibration and an ensemble's members, at desktop and phone widths."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Page

from annotate.models import Membership
from rewardtrain.models import TrainingRun
from rewardtrain.training.calibration import calibration_report
from rewardtrain.training.ensemble import combine_member_rewards
from rewardtrain.training.evaluate import evaluate_scores
from tests.browser import ARTIFACTS, page_without_script_errors
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

PASSWORD = "correct horse battery staple"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    # Closed before the live server's database is emptied (see tests/annotate/test_annotate_page.py).
    with page_without_script_errors(browser, width=1366, height=900, timeout_ms=15_000) as page:
        yield page


def ensemble_report() -> dict:
    """The report an ensemble of three over-confident members makes on 40 validation pairs."""
    rng = np.random.default_rng(0)
    chosen = rng.normal(1.0, 3.0, (3, 40)) + rng.normal(0.0, 3.0, 40)
    rejected = rng.normal(0.0, 3.0, (3, 40))
    offsets = np.array([0.3, -0.2, 0.1])
    mean_chosen, mean_rejected, spread = combine_member_rewards(chosen, rejected, offsets)
    report = evaluate_scores(mean_chosen, mean_rejected)
    report["ensemble"] = {
        "size": 3,
        "uncertainty_mean": float(spread.mean()),
        "members": [
            {"seed": 42 + index, "best_step": step, "stopped_early_at": stop, "offset": float(offsets[index]),
             **{key: evaluate_scores(chosen[index], rejected[index])[key] for key in ("accuracy", "loss")}}
            for index, (step, stop) in enumerate([(40, None), (60, None), (40, 80)])
        ],
    }  # fmt: skip
    report["selection"] = {"metric": "loss", "members": []}
    report["temperature_scaling"] = calibration_report(mean_chosen, mean_rejected)
    report["data"] = {
        "validation": {"source": "held_out", "pairs": 40, "prompts": 12, "share": 0.1, "seed": 0,
                       "train_pairs": 360, "train_prompts": 108},
    }  # fmt: skip
    return report


def test_the_run_page_reports_the_validation_split_the_kept_step_calibration_and_members(page, live_server):
    project = ProjectFactory()
    engineer = UserFactory(username="engineer")
    MembershipFactory(user=engineer, project=project, role=Membership.Role.ENGINEER)
    run = TrainingRun.objects.create(
        project=project,
        base_model="minilm",
        status=TrainingRun.Status.SUCCEEDED,
        hyperparameters={"ensemble_size": 3, "early_stopping_patience": 2},
        evaluation=ensemble_report(),
        step=200,
        total_steps=270,
    )
    single = ensemble_report()
    del single["ensemble"]
    single["selection"] = {"metric": "accuracy", "best_step": 60, "best_epoch": 1.0, "evaluations": 4,
                           "since_best": 2, "stopped_early_at": 80, "best_value": 0.7}  # fmt: skip
    other = TrainingRun.objects.create(
        project=project, base_model="minilm", status=TrainingRun.Status.SUCCEEDED, evaluation=single
    )

    target = reverse("project-training-run", args=[project.slug, run.pk])
    page.goto(f"{live_server.url}{reverse('login')}?next={target}")
    page.fill("#id_username", "engineer")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{target}")
    facts = page.locator(".run-selection").inner_text()
    assert "12 of 120 prompts (10%, seed 0) were held out with their 40 pairs" in facts
    assert "Temperature" in facts and "before" in facts
    assert page.locator(".ensemble-members tbody tr").count() == 4
    assert "stopped at 80" in page.locator(".ensemble-members").inner_text()
    shots = {}
    for width, height in ((1366, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        shots[width] = ARTIFACTS / f"run-ensemble-{width}.png"
        page.screenshot(path=shots[width], full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width

    page.goto(f"{live_server.url}{reverse('project-training-run', args=[project.slug, other.pk])}")
    kept = page.locator(".run-selection").inner_text()
    assert "Step 60 (epoch 1.00), the best of 4 evaluations by validation accuracy" in kept
    assert "training stopped early at step 80, after 2 evaluations without improvement" in kept
    assert "stopped early: validation stopped improving" in page.locator("#run-live").inner_text()
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    page.screenshot(path=ARTIFACTS / "run-single-390.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_the_training_form_has_the_validation_and_model_selection_settings(page, live_server):
    project = ProjectFactory()
    engineer = UserFactory(username="engineer")
    MembershipFactory(user=engineer, project=project, role=Membership.Role.ENGINEER)
    target = reverse("project-training", args=[project.slug])
    page.goto(f"{live_server.url}{reverse('login')}?next={target}")
    page.fill("#id_username", "engineer")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{target}")
    for name in (
        "validation_share",
        "selection_metric",
        "early_stopping_patience",
        "calibrate",
        "ensemble_size",
    ):
        assert page.locator(f'[name="hp-{name}"]').count() == 1, name
    assert page.locator('[name="hp-calibrate"]').is_checked()
    page.locator("summary", has_text="Validation and model selection").click()
    assert page.locator('[name="hp-validation_share"]').is_visible()
    for width, height in ((1366, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(200)
        page.screenshot(path=ARTIFACTS / f"training-form-{width}.png", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
