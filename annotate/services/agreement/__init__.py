"""Agreement snapshots: the quality dashboard's figures for a project, computed from its judgments.

Only annotators' judgments count: labels imported with the data (origin ``imported``) are not anyone's
opinion to agree with. They are read in bulk into numpy arrays (``annotate.services.judgment_arrays``), with
no model instances, and every statistic comes from ``annotate/stats/agreement/``. ``compute`` builds the
figures (``annotators`` and ``timeline`` their larger parts), ``snapshots`` stores them when the judgments
changed, and ``figures`` derives flags and the training gate from them against the current thresholds.
"""

from annotate.services.agreement.coding import signed_strength
from annotate.services.agreement.compute import agreement_snapshot_compute
from annotate.services.agreement.figures import agreement_figures
from annotate.services.agreement.snapshots import (
    agreement_refresh_request,
    agreement_snapshot_current,
    agreement_snapshot_refresh,
    agreement_training_gate,
)
from annotate.services.judgment_arrays import CHOICES, judgment_arrays

__all__ = [
    "CHOICES",
    "agreement_figures",
    "agreement_refresh_request",
    "agreement_snapshot_compute",
    "agreement_snapshot_current",
    "agreement_snapshot_refresh",
    "agreement_training_gate",
    "judgment_arrays",
    "signed_strength",
]
