"""Training runs tracked where users look: TensorBoard and Weights & Biases, through Accelerate's tracker classes.

    acula align ... --report-to tensorboard        # OUT/tensorboard (tensorboard --logdir OUT/tensorboard)
    acula align ... --report-to tensorboard,wandb  # and a W&B run (pip install 'acula[wandb]')

W&B is an optional extra. Without `WANDB_API_KEY` (or an explicit `WANDB_MODE`) its runs are written offline under
OUT/wandb and uploaded later with `wandb sync OUT/wandb/offline-run-*`; a training job never blocks on a login
prompt. Trackers run on the main process only and log scalars: loss terms, learning rate, throughput, and the
held-out CKA when one is computed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

CHOICES = ("tensorboard", "wandb")


def parse_report_to(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """'tensorboard,wandb' / 'none' / 'all' -> the tracker names, checked."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip().lower() for n in items if n and n.strip()]
    if "all" in names:
        names = [n for n in names if n != "all"] + list(CHOICES)
    bad = [n for n in names if n not in (*CHOICES, "none")]
    if bad:
        raise ValueError(f"--report-to: unknown tracker(s) {', '.join(bad)}; choose from "
                         f"{', '.join(CHOICES)}, all or none")
    if "none" in names and len(set(names)) > 1:
        raise ValueError("--report-to: 'none' cannot be combined with a tracker")
    return tuple(n for n in dict.fromkeys(names) if n != "none")


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested run configuration -> one level of scalars ('train/lr': 1e-4), as hyper-parameter tables want."""
    out: dict[str, bool | int | float | str] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, f"{key}/"))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        elif v is None:
            out[key] = "none"
        else:
            out[key] = json.dumps(v, default=str)
    return out


class Tracking:
    """The trackers of one run; a no-op without any (or off the main process)."""

    def __init__(self, report_to: Iterable[str], out_dir: str | os.PathLike, project: str,
                 run_name: str | None = None, config: dict[str, Any] | None = None, enabled: bool = True):
        self.trackers: list = []
        names = parse_report_to(list(report_to))
        if not (enabled and names):
            return
        from accelerate.tracking import TensorBoardTracker, WandBTracker

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            if name == "tensorboard":
                tracker = TensorBoardTracker("tensorboard", str(out_dir))  # event files in OUT/tensorboard
            else:
                try:
                    import wandb  # noqa: F401
                except ModuleNotFoundError:
                    raise ValueError("--report-to wandb needs Weights & Biases: pip install 'acula[wandb]' "
                                     "(or pip install wandb)") from None
                mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
                tracker = WandBTracker(project, name=run_name or out_dir.name, dir=str(out_dir), mode=mode)
            tracker.start()
            self.trackers.append(tracker)
        if config:
            values = flat_config(config)
            for tracker in self.trackers:
                tracker.store_init_configuration(values)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def log(self, values: dict[str, float], step: int) -> None:
        values = {k: float(v) for k, v in values.items() if v is not None}
        for tracker in self.trackers:
            tracker.log(values, step=step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []
