"""`acula experiment align`: read, prepare, train every arm, score, write."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..._io import atomic_path, sha256_file, write_json, write_text
from ...audio import frontend
from ...datasets.manifest import write_manifest
from ...encoders.checkpoint import save_encoder

from .config import ARM_NAMES, TRAINED, ExperimentConfig
from .corpus import fingerprint, load_prepared, prepare, save_prepared
from .report import config_dict, diagnostics_table, plot, table
from .scoring import resolved, diagnose, evaluate, summarise, teacher_side
from .training import CroppedData, FrozenTrunk, encode, freeze, initial_encoder, resolve_device, train_arm


# ---- the experiment -----------------------------------------------------------------------------------------


def run(cfg: ExperimentConfig, log=print) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, log)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: ExperimentConfig, log) -> dict:
    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(cfg.prepared or out / "prepared")
    if (folder / "prepared.json").is_file():
        base = initial_encoder(cfg)
        prep = load_prepared(folder, fingerprint(cfg, base))
        log(f"inputs, labels and teacher embeddings from {folder}")
    else:  # the corpora first: a missing one is the error to see, not the encoder's
        prep = prepare(cfg, log)
        save_prepared(prep, folder)
        base = initial_encoder(cfg)
    corpora, offset, align_idx, groups = prep.corpora, prep.offset, prep.align_idx, prep.groups
    for c in corpora:
        write_manifest(out / f"split-{c.spec.dataset}.csv",
                       [{"audio_path": p, "subject_id": s, "part": "heldout" if h else "train"}
                        for p, s, h in zip(c.paths, c.subjects, c.heldout)])
    heldout_all = np.concatenate([c.heldout for c in corpora])
    assert not heldout_all[align_idx].any(), "a held-out recording is in the alignment corpus"
    write_manifest(out / "alignment.csv", [{"audio_path": r["audio_path"], "subject_id": r["subject_id"],
                                            "dataset": g, "Gen_Report": r["Gen_Report"]}
                                           for r, g in zip(prep.align_rows, groups)])
    device = resolve_device(cfg.device)
    crop = None if cfg.crop_seconds is None else int(round(cfg.crop_seconds * base.contract.sample_rate))
    if crop is not None and base.contract.frontend == "logmel":
        crop = frontend.frames_for(crop)
    x_all, text = prep.x, prep.targets["reports"]
    diagnostics = {"reports_vs_labels": teacher_side(corpora, prep.report_emb), "arms": {}}

    # the initialisation: a checkpoint, or MAM pre-training on the alignment audio from a seeded random init
    init = base
    if cfg.checkpoint is None and cfg.mam_epochs:
        log(f"MAM pre-training {cfg.encoder} for {cfg.mam_epochs} epochs on {len(align_idx)} recordings")
        model, _ = train_arm(base, text, CroppedData(x_all[align_idx], text, crop, cfg.split_seed, groups),
                             replace(cfg.train, epochs=cfg.mam_epochs, lambda_align=0.0, seed=cfg.split_seed),
                             out / "runs" / "mam-pretrain", {"arm": "mam-pretrain"}, device=device)
        init = model.encoder
    freeze(init, cfg.freeze_layers)
    trunk = FrozenTrunk(init, x_all, cfg.freeze_layers) if cfg.freeze_layers else None
    feats_of = (lambda enc: trunk.features(enc)) if trunk else (lambda enc: encode(enc, x_all, device))
    (out / "encoders").mkdir(exist_ok=True)
    save_encoder(init, out / "encoders" / "initial.safetensors")

    pool = None
    if cfg.probe_workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(cfg.probe_workers, mp_context=multiprocessing.get_context("spawn"))
    results: dict[str, dict] = {}
    zero: dict[str, dict] = {}
    saved: dict[str, np.ndarray] = {}
    seconds: dict[str, dict] = {}
    f0 = saved["initial"] = feats_of(init)
    evaluate(results, zero, "initial", -1, None, f0, text, prep, cfg, pool, log)
    diagnostics["arms"]["initial"] = [diagnose(f0, corpora, offset, prep.report_emb)]
    lam = cfg.train.lambda_align or 1.0
    arms = [a for a in cfg.arms if TRAINED[a][0] in prep.targets]
    for a in sorted(set(cfg.arms) - set(arms)):
        log(f"arm {a} skipped: no {TRAINED[a][0]} targets (--published-reports)")

    def finish(wait: bool) -> dict:
        summary = summarise(resolved(results, wait), zero, corpora)
        summary.update({
            "complete": wait, "wall_seconds": time.time() - t0, "seeds": list(cfg.seeds),
            "probe_seeds": list(cfg.probe_seeds), "encoder": f"{cfg.encoder}:{cfg.preset or 'default'}",
            "initial": (f"checkpoint {Path(cfg.checkpoint).name} (sha256 {sha256_file(cfg.checkpoint)[:16]})"
                        if cfg.checkpoint else f"random init + {cfg.mam_epochs} MAM epochs on the alignment audio"),
            "teacher": cfg.teacher, "n_alignment": int(len(align_idx)), "device": str(device),
            "train_seconds": seconds,
            "corpora": {c.spec.dataset: {"recordings": len(c.paths), "subjects": len(set(c.subjects)),
                                         "heldout_recordings": int(c.heldout.sum()),
                                         "heldout_subjects": len(set(c.subjects[c.heldout])),
                                         "notes": c.notes} for c in corpora},
            "config": config_dict(cfg, crop), "diagnostics": diagnostics})
        write_json(out / "results.json", summary)
        return summary

    try:
        for seed in cfg.seeds:
            for arm in arms:
                target, aligned, mode = TRAINED[arm]
                tgt = prep.targets[target]
                log(f"seed {seed}: {ARM_NAMES[arm]}")
                tc = replace(cfg.train, lambda_align=lam if aligned else 0.0, seed=seed, align_features=mode,
                             unmasked_epochs=cfg.unmasked_epochs if arm == "aligned_masked_tuned" else 0)
                t1 = time.time()
                model, _ = train_arm(init, tgt, CroppedData(x_all[align_idx], tgt, crop, seed, groups), tc,
                                     out / "runs" / f"{arm}-seed{seed}",
                                     {"teacher": prep.teacher_key, "arm": arm, "experiment": "align"}, device=device)
                seconds.setdefault(arm, {})[seed] = time.time() - t1
                heads_state = {"audio": model.audio_projection.state_dict(),
                               "language": model.language_projection.state_dict()}
                save_encoder(model.encoder, out / "encoders" / f"{arm}-seed{seed}.safetensors",
                             projection_heads=heads_state)
                f = saved[f"{arm}_seed{seed}"] = feats_of(model.encoder)
                evaluate(results, zero, arm, seed, model if target != "labels" and aligned else None, f, tgt,
                         prep, cfg, pool, log)
                diagnostics["arms"].setdefault(arm, []).append(diagnose(f, corpora, offset, prep.report_emb))
                finish(wait=False)  # what is done so far: a killed run keeps it
        summary = finish(wait=True)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    with atomic_path(out / "features.npz") as tmp, open(tmp, "wb") as fh:  # to re-probe without retraining
        np.savez(fh, paths=np.array([p for c in corpora for p in c.paths]), heldout=heldout_all, **saved)
    plot(summary, out / "results.png")
    write_text(out / "table.md", table(summary) + "\n\n" + diagnostics_table(summary) + "\n")
    return summary
