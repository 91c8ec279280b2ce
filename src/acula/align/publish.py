"""`acula publish`: an `acula align` run folder -> a Hugging Face model folder that others load by name.

    acula publish runs/align --bench runs/bench --out runs/card [--push OWNER/NAME]

The folder holds `model.safetensors` (the encoder without its masked-modelling decoder, and both projection heads;
the acula config rides in the file's metadata), `config.json` (encoder, preset, input contract, heads, teacher, loss
and the run's configuration) and `README.md`, a model card: YAML metadata (license, tags, `pipeline_tag:
feature-extraction`, `library_name: acula`, `base_model`, a `model-index` from the bench results), intended use, the
alignment data with its subject exclusions, the evaluation table, limitations and how to load it. Before anything is
pushed the folder is loaded back (`create(name, pretrained=FOLDER)`) and must give the run's embeddings bit for bit.
`--push` uploads with `huggingface_hub`, the token taken from HF_TOKEN in the environment and never printed.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from .._io import sha256_file, write_text
from ..encoders.hub import CONFIG_FILE, MODEL_FILE, HubError
from ..encoders.hub import endpoint as hub_endpoint
from ..encoders.hub import offline as hub_offline
from ..encoders.hub import token as hub_token

CARD_FILE = "README.md"
FILES = (MODEL_FILE, CONFIG_FILE, CARD_FILE)
PAPER = "https://arxiv.org/abs/2512.04847"
# bench metric -> model-index metric type / task type
_METRICS = {"AUROC": ("roc_auc", "audio-classification"), "MAE": ("mae", "audio-regression")}


class PublishError(ValueError):
    """A run folder that cannot be published, or a push that cannot happen; the message says why."""


# ---------------------------------------------------------------------------------------------------- reading
def read_run(run_dir: str | os.PathLike):
    """(aligned model, its checkpoint, train log rows) of a finished `acula align` run."""
    from .model import load_aligned

    run = Path(run_dir)
    final = run / "acula_final.pt"
    if not final.is_file():
        hint = (" (checkpoint_last.pt is there: the run has not finished; resume it with the same acula align "
                "command)" if (run / "checkpoint_last.pt").is_file() else "")
        raise PublishError(f"{run}: no acula_final.pt, so not a finished `acula align` run{hint}")
    model, ck = load_aligned(final)  # weights_only, strict: encoder and both heads must fit
    log_path = run / "train_log.csv"
    rows = list(csv.DictReader(log_path.open(newline=""))) if log_path.is_file() else []
    return model, ck, rows


def read_bench(bench: str | os.PathLike | None) -> tuple[list[dict], dict]:
    """(rows of results.csv, run.json) of an `acula bench` (or `acula finetune`) output; a folder or its CSV."""
    if bench is None:
        return [], {}
    path = Path(bench)
    csv_path = path / "results.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise PublishError(f"--bench {bench}: no results.csv (give the output folder of `acula bench`)")
    rows = list(csv.DictReader(csv_path.open(newline="", encoding="utf-8")))
    if rows and not {"task", "metric", "mean"} <= set(rows[0]):
        raise PublishError(f"{csv_path}: not an `acula bench` results.csv (columns: {', '.join(rows[0])})")
    run_json = csv_path.parent / "run.json"
    info = json.loads(run_json.read_text()) if run_json.is_file() else {}
    return rows, info


# ---------------------------------------------------------------------------------------------------- writing
def publish(run_dir: str | os.PathLike, out: str | os.PathLike, *, name: str | None = None,
            bench: str | os.PathLike | None = None, license: str = "apache-2.0", push: str | None = None,
            private: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the model folder `out` from `run_dir` (and push it to `push` = OWNER/NAME). Returns its config."""
    if push and not hub_token():  # before any work: a push without a token cannot succeed
        raise PublishError(_NO_TOKEN)
    model, ck, log_rows = read_run(run_dir)
    bench_rows, bench_info = read_bench(bench)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PublishError(f"--out {out}: exists and is not a folder")
    name = push or name or Path(run_dir).resolve().name
    config = build_config(model, ck, log_rows, Path(run_dir), bench, bench_info)
    from ..encoders.checkpoint import save_encoder

    encoder = model.encoder
    saved_config = encoder.config
    encoder.config = {k: v for k, v in encoder.config.items() if k != "pretrained"}  # provenance: initialised_from
    try:
        heads = {"audio": model.audio_projection.state_dict(), "language": model.language_projection.state_dict()}
        save_encoder(encoder, out / MODEL_FILE, projection_heads=heads, include_decoder=False, extra_config=config,
                     config_path=out / CONFIG_FILE)
    finally:
        encoder.config = saved_config
    config = json.loads((out / CONFIG_FILE).read_text())
    sha = sha256_file(out / MODEL_FILE)
    write_text(out / CARD_FILE, model_card(config, bench_rows, bench_info, name, sha, license))
    check_reload(model, out, log)
    log(f"wrote {out / MODEL_FILE} (sha256 {sha[:12]}…), {out / CONFIG_FILE}, {out / CARD_FILE}")
    if push:
        url = push_folder(out, push, private=private, log=log)
        log(f"pushed to {url}")
    return config


def build_config(model, ck, log_rows: list[dict], run_dir: Path, bench, bench_info: dict) -> dict[str, Any]:
    """The keys `acula publish` adds to the encoder config (format, encoder, contract, decoder: false)."""
    from .. import __version__

    cfg = ck.config or {}
    train = cfg.get("train") or {}
    init = (cfg.get("encoder") or {}).get("pretrained") or cfg.get("init_checkpoint")
    last = log_rows[-1] if log_rows else {}
    final = {k: float(last[k]) for k in ("loss", "align", "mam") if last.get(k) not in (None, "")}
    heldout = [float(r["heldout_cka"]) for r in log_rows if r.get("heldout_cka") not in (None, "")]
    return {
        "library_name": "acula", "model_type": "acula-aligned-encoder", "published_with": __version__,
        "heads": {**(cfg.get("heads") or model.head_config), "audio_in": model.encoder.feature_dim},
        "teacher": cfg.get("teacher"),
        "loss": {k: train.get(k) for k in ("loss", "lambda_align", "lambda_mam")}
        | {"align_within": (train.get("extra") or {}).get("align_within")},
        "train": train,
        "alignment_data": {"manifest": Path(cfg["manifest"]).name if cfg.get("manifest") else None,
                           **(cfg.get("alignment_data") or {})},
        "initialised_from": init,
        "run": {"folder": run_dir.resolve().name, "steps": int(last["step"]) if last.get("step") else None,
                "final": final or None, "heldout_cka": heldout[-1] if heldout else None},
        "bench": {"source": Path(bench).name if bench else None, "tasks": bench_info.get("tasks"),
                  "seeds": bench_info.get("seeds"), "head": bench_info.get("head")} if bench else None,
    }


def check_reload(model, out: Path, log: Callable[[str], None] = print) -> None:
    """Load the folder back by path, as `create(name, pretrained=...)` will from the hub, and compare embeddings."""
    from ..encoders import create
    from .model import load_aligned

    enc = model.encoder
    back = create(enc.name, pretrained=str(out))
    again, _ = load_aligned(out / MODEL_FILE)
    c = enc.contract
    g = torch.Generator().manual_seed(0)
    shape = (2, c.frames, c.n_mels) if c.frontend == "logmel" else (2, int(c.sample_rate * c.window_seconds))
    x = torch.randn(*shape, generator=g)
    was = enc.training
    enc.eval()
    with torch.no_grad():
        ref = enc.forward_feature(x)
        ref_heads = model.eval().embed_audio(x)
        got = back.eval().forward_feature(x)
        got_heads = again.embed_audio(x)
    enc.train(was)
    if not (torch.equal(ref, got) and torch.equal(ref_heads, got_heads)):
        raise PublishError(f"{out}: the published weights do not reproduce the run's embeddings "
                           f"(max difference {float((ref - got).abs().max()):.3g}); not publishing")
    log(f"checked: {out} loads back and gives the run's embeddings and projections bit for bit")


# ---------------------------------------------------------------------------------------------------- the card
def model_card(config: dict, bench_rows: list[dict], bench_info: dict, name: str, sha: str,
               license: str = "apache-2.0") -> str:
    """README.md: YAML metadata (model-index from the bench rows) and the card's sections."""
    from huggingface_hub import EvalResult, ModelCardData

    enc = config["encoder"]
    bench_rows = [{**r, "dataset": _dataset_name(r)} for r in bench_rows]
    ok = [r for r in bench_rows if r.get("status", "ok") == "ok" and r.get("mean") not in (None, "")]
    results = [EvalResult(task_type=_METRICS.get(r["metric"], (None, "other"))[1], task_name=r.get("name") or r["task"],
                          dataset_type=r["dataset"].lower().replace(" ", "-"), dataset_name=r["dataset"],
                          metric_type=_METRICS.get(r["metric"], (r["metric"].lower(),))[0], metric_name=r["metric"],
                          metric_value=float(r["mean"])) for r in ok]
    init = config.get("initialised_from") or {}
    tags = ["audio", "medical-audio", "acula", "cka-alignment", enc["name"], "heart-sounds", "lung-sounds",
            "respiratory-sounds"]
    data = ModelCardData(license=license, library_name="acula", pipeline_tag="feature-extraction", tags=tags,
                         model_name=name, eval_results=results or None,
                         base_model=init.get("repo") if init.get("repo") else None)
    teacher = _teacher(config.get("teacher"))
    body = [
        f"# {name}", "",
        f"{_encoder_text(enc)}: an audio encoder of heart, lung, cough and breath sounds, post-trained with "
        f"acula so that its embeddings line up with what a frozen language model, {_teacher_name(teacher)}, "
        f"makes of clinical reports written from each recording's metadata: AcuLa (Audio–Clinical Understanding "
        f"via Language Alignment; Wang, Chen, Zeghidour, Saeed, [arXiv 2512.04847]({PAPER})). Published with "
        f"`acula publish` (acula {config.get('published_with')}) from the run `{config['run']['folder']}`.", "",
        "## Model details", "", "| | |", "|---|---|",
        *_details(config, teacher, sha), "",
        "## Intended use", "",
        "- Research on medical audio: frozen embeddings for linear probes (`acula bench`), zero-shot classification "
        "and audio-report retrieval in the joint space of the two projection heads (`acula zeroshot`, "
        "`acula retrieve`), and a starting point for fine-tuning (`acula finetune`).",
        "- Input: single recordings of heart, lung, cough or breath sounds, as acula reads them (see the input "
        "contract above); other sounds give embeddings with no tested meaning.",
        "- **Not a medical device.** Not validated for diagnosis, screening, triage or any clinical decision; "
        "scores below are research measurements on the named data only.", "",
        "## Alignment data", "",
        *_data_section(config), "",
        "## Evaluation", "",
        *_eval_section(bench_rows, bench_info, config), "",
        "## Limitations", "",
        *_limitations(config, teacher), "",
        "## How to load", "",
        *_how_to_load(name, enc["name"]), "",
        "## Citation", "",
        "```bibtex",
        "@article{wang2025acula,",
        "  title   = {AcuLa: Audio-Clinical Understanding via Language Alignment},",
        "  author  = {Wang, Tsai-Ning and Chen, Lin-Lin and Zeghidour, Neil and Saeed, Aaqib},",
        "  journal = {arXiv preprint arXiv:2512.04847},",
        "  year    = {2025}",
        "}",
        "```", "",
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)


def _teacher_name(teacher: dict) -> str:
    model = teacher.get("model") or "unknown"
    return "all-MiniLM-L6-v2 (`minilm`)" if model == "minilm" else f"`{model}`"


def _dataset_name(row: dict) -> str:
    """The bench row's dataset; a custom task's is its CSV path, shown by file name only (no local paths)."""
    name = (row.get("dataset") or "").strip()
    if not name:
        return row.get("task") or "custom"
    return Path(name).stem if ("/" in name or "\\" in name or name.endswith(".csv")) else name


def _teacher(stored) -> dict:
    if isinstance(stored, str) and stored.startswith("{"):
        try:
            return json.loads(stored)
        except json.JSONDecodeError:
            pass
    return {"model": str(stored) if stored else "unknown"}


_PRETTY = {"opera-gt": "OPERA-GT", "opera-ct": "OPERA-CT", "opera-ce": "OPERA-CE", "yamnet": "YAMNet",
           "hf-ast": "AST", "hf-clap": "CLAP"}


def _encoder_text(enc: dict) -> str:
    opts = ", ".join(f"{k} {v}" for k, v in enc.items() if k not in ("name", "pretrained"))
    return _PRETTY.get(enc["name"], enc["name"]) + (f" ({opts})" if opts else "")


def _fmt(v, digits: int = 4) -> str:
    return "—" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _details(config: dict, teacher: dict, sha: str) -> list[str]:
    enc, c, h, t = config["encoder"], config["contract"], config["heads"], config.get("train") or {}
    loss = config.get("loss") or {}
    init = config.get("initialised_from")
    run = config.get("run") or {}
    within = loss.get("align_within")
    lines = [
        f"| encoder | `{enc['name']}` ({', '.join(f'{k}={v}' for k, v in enc.items() if k != 'name') or 'defaults'}), "
        f"{config['feature_dim']}-d features |",
        f"| input contract | {c['sample_rate']} Hz mono, {c['frontend']}"
        + (f" with {c['n_mels']} mel bins, {c['window_seconds']:.2f} s windows ({c['frames']} frames), "
           f"windowing policy `{c['window_policy']}`" if c["frontend"] == "logmel" else "") + " |",
        f"| projection heads | audio {h.get('audio_in', config['feature_dim'])} → {h.get('hidden_dim')} → "
        f"{h.get('proj_dim')}{' (batch-standardised input)' if h.get('audio_input_norm') else ''}; language "
        f"{h.get('text_dim')} → {h.get('hidden_dim')} → {h.get('proj_dim')}; dropout {h.get('dropout')} |",
        f"| teacher | {_teacher_name(teacher)}"
        + (f", layer {teacher['layer']}, {teacher.get('pooling')} pooling, max length {teacher.get('max_length')}"
           if "layer" in teacher else "") + (f" ({teacher['weights']})" if teacher.get("weights") else "") + " |",
        f"| loss | {loss.get('lambda_align')} × alignment (`{loss.get('loss')}`) + {loss.get('lambda_mam')} × masked "
        f"audio modelling; CKA {f'within each `{within}` group' if within and within != 'none' else 'over the batch'} |",
        f"| training | {t.get('epochs')} epochs, {_fmt(run.get('steps'))} steps, batch {t.get('batch_size')}"
        f"{' × ' + str(t.get('grad_accum')) + ' accumulation' if t.get('grad_accum', 1) != 1 else ''}, AdamW lr "
        f"{t.get('lr')}, weight decay {t.get('weight_decay')}, warm-up {t.get('warmup_steps')} steps, seed "
        f"{t.get('seed')}, precision {t.get('mixed_precision')} |",
        "| initialised from | " + _init_text(init) + " |",
        f"| final training loss | {_fmt((run.get('final') or {}).get('loss'))} (alignment "
        f"{_fmt((run.get('final') or {}).get('align'))}, MAM {_fmt((run.get('final') or {}).get('mam'))})"
        + (f"; held-out CKA {_fmt(run['heldout_cka'])}" if run.get("heldout_cka") is not None else "") + " |",
        f"| weights | `{MODEL_FILE}` (sha256 `{sha}`): the encoder without its masked-modelling decoder, and both "
        "projection heads (`projection_heads.audio.*`, `projection_heads.language.*`) |",
    ]
    return lines


def _init_text(init: dict | None) -> str:
    if not init:
        return "a random initialisation (no --checkpoint or --pretrained recorded)"
    sha = f" (sha256 `{init['sha256']}`)" if init.get("sha256") else ""
    if init.get("repo"):
        return f"`{init['repo']}` `{init.get('file')}` at commit `{init.get('commit')}`{sha}"
    source = str(init.get("source"))
    return f"`{source if source.startswith('hf://') else Path(source).name}`{sha}"


def _data_section(config: dict) -> list[str]:
    d = config.get("alignment_data") or {}
    if not d.get("recordings"):
        return ["The run recorded no description of its alignment data (it predates `acula publish`); see its "
                "manifest."]
    datasets = d.get("datasets") or {}
    subj = f" of {d['subjects']} subjects" if d.get("subjects") else ""
    lines = [f"- {d['recordings']} recordings{subj}"
             + (f" from {', '.join(f'{k} ({v})' for k, v in sorted(datasets.items()))}" if datasets else "")
             + (f", manifest `{d['manifest']}`" if d.get("manifest") else "")
             + "; each paired with a clinical report written from its metadata (`acula reports build`)."]
    ex = d.get("exclude_subjects")
    if ex:
        lines.append(f"- Subject exclusions: the {ex['subjects']} subjects listed in `{Path(ex['file']).name}` "
                     f"({ex['recordings']} recordings of this manifest) never entered alignment: the test subjects "
                     "of the evaluation splits, so no evaluated subject was aligned on.")
    else:
        lines.append("- **No subject exclusion was recorded** (`acula align --exclude-subjects` was not used): if the "
                     "evaluation data shares subjects with the alignment data, its scores may be optimistic.")
    if d.get("heldout_recordings"):
        lines.append(f"- {d['heldout_recordings']} further recordings (whole subjects) were held out of training "
                     "to measure the held-out CKA.")
    return lines


def _eval_section(rows: list[dict], info: dict, config: dict) -> list[str]:
    if not rows:
        return ["No benchmark results were given to `acula publish` (`--bench DIR`, the output of `acula bench` "
                "with this model: `acula bench --encoder ... --pretrained OWNER/NAME`)."]
    seeds = info.get("seeds")
    lines = [f"Linear probes on frozen embeddings (`acula bench`, head `{info.get('head', 'linear')}`"
             + (f", seeds {', '.join(map(str, seeds))}" if seeds else "") + "); mean ± standard deviation over "
             "seeds. AUROC: higher is better; MAE: lower is better.", "",
             "| task | dataset | metric | score | seeds | train / val / test |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("status", "ok") != "ok" or r.get("mean") in (None, ""):
            lines.append(f"| {r.get('name') or r['task']} | {r.get('dataset', '')} | {r['metric']} | failed: "
                         f"{(r.get('error') or '').replace('|', '/')[:80]} | | |")
            continue
        lines.append(f"| {r.get('name') or r['task']} | {r.get('dataset', '')} | {r['metric']} | "
                     f"{float(r['mean']):.3f} ± {float(r['std'] or 0):.3f} | {r.get('n_seeds', '')} | "
                     f"{r.get('n_train', '')} / {r.get('n_val', '')} / {r.get('n_test', '')} |")
    return lines


def _limitations(config: dict, teacher: dict) -> list[str]:
    d = config.get("alignment_data") or {}
    lines = [
        "- The reports the encoder was aligned to are generated from metadata (diagnoses, labels, demographics), "
        "not written by clinicians about the sound; the alignment can only carry what the metadata says.",
        "- Benchmarks are small and come from few sites and devices; scores do not transfer to other populations, "
        "stethoscopes or recording protocols without new measurements.",
        "- Zero-shot and retrieval scores depend on the teacher: use the same teacher settings "
        f"({_teacher_name(teacher)}) for the text side, and fit the calibration on alignment pairs "
        "(`acula calibrate`).",
        "- The masked-audio-modelling decoder is not included: masked modelling restarts from scratch if this "
        "encoder is aligned again.",
    ]
    if (d.get("recordings") or 0) < 1000:
        lines.append(f"- The alignment corpus is small ({d.get('recordings') or 'unknown'} recordings).")
    return lines


def _how_to_load(name: str, encoder: str) -> list[str]:
    return [
        "```bash",
        "pip install acula",
        "```", "",
        "```python",
        "from acula.encoders import create",
        "",
        f'encoder = create("{encoder}", pretrained="{name}")  # fetched into the Hugging Face cache, sha256 recorded',
        "features = encoder.eval().forward_feature(logmel)  # (B, T, n_mels) -> (B, feature_dim)",
        "```", "",
        "```bash",
        f"acula embed recordings/ --encoder {encoder} --pretrained {name} --out embeddings.npz",
        f"acula zeroshot --pretrained {name} --manifest test.csv --label-column murmur "
        "--align-manifest align.csv --out zeroshot/",
        "```", "",
        f"Pin a revision for reproducible results: `pretrained=\"{name}@<commit>\"`. The weights are safetensors; "
        "nothing in this repository runs code when loaded.",
    ]


# ---------------------------------------------------------------------------------------------------- pushing
_NO_TOKEN = ("--push needs a Hugging Face access token with write permission in the environment: set HF_TOKEN "
             "(create one at https://huggingface.co/settings/tokens). It is read from the environment only, never "
             "written or printed")


def push_folder(folder: str | os.PathLike, repo_id: str, private: bool = False,
                message: str | None = None, log: Callable[[str], None] = print) -> str:
    """Upload the model folder's files to the hub repo `repo_id` (created if needed); returns the commit URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    tok = hub_token()
    if not tok:
        raise PublishError(_NO_TOKEN)
    if hub_offline():
        raise PublishError("offline mode (HF_HUB_OFFLINE=1): cannot push; unset it to upload")
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise PublishError(f"{folder}: not a published model folder (missing {', '.join(missing)})")
    api = HfApi(endpoint=hub_endpoint(), token=tok)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=list(FILES),
                                 commit_message=message or f"acula publish: {repo_id}")
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", "?")
        why = ("the token was refused (check that HF_TOKEN is valid and has write access to "
               f"{repo_id.split('/')[0]})" if status in (401, 403) else str(e).splitlines()[0])
        raise HubError(f"cannot push to Hugging Face repo {repo_id!r}: {why}") from None
    except Exception as e:  # unreachable hub
        raise HubError(f"cannot push to Hugging Face repo {repo_id!r}: {type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''}") from None
    return str(getattr(info, "commit_url", info))
