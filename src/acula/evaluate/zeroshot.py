"""The old home of the joint-space code, kept so existing imports work; it now lives in
`acula.evaluate.joint` (one module per job). New code should import from there."""

from __future__ import annotations

from .joint.calibration import (CALIBRATION_FORMAT, Calibration, default_calibration_path,  # noqa: F401
                                fit_calibration, resolve_calibration)
from .joint.classify import (DEFAULT_LOGIT_SCALE, auroc_over_present_classes, classify,  # noqa: F401
                             run_zeroshot, zero_shot)
from .joint.model import load_aligned, project_audio, project_texts, teacher_for  # noqa: F401
from .joint.prompts import DEFAULT_PROMPTS, Prompts  # noqa: F401
from .joint.similarity import SIMILARITIES, cosine, similarity, similarity_modes  # noqa: F401
from .joint.space import JointSpace, JointSpaceConfig, kept_rows, open_joint_space  # noqa: F401
