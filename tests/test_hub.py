"""Hub conventions, without the internet: published weights by name (download, cache, pin, offline, sha256),
`acula publish` (model folder + card, push, load back by name, same embeddings) and training trackers.

The hub is `fake_hub.FakeHub`, a loopback HTTP server speaking the part of the Hugging Face API that
huggingface_hub calls; `HF_ENDPOINT` points at it and `HF_HUB_CACHE` at a temporary folder, so nothing here
reaches the network or the user's cache.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from acula.cli import main
from acula.encoders import create, hub
from acula.encoders.checkpoint import read_checkpoint
from acula.encoders.hub import HubError
from fake_hub import FakeHub

TOKEN = "hf_test_WRITE_token_5a7c"
TINY = ["--encoder", "opera-gt", "--preset", "tiny"]
OPERA = "evelyn0414/OPERA"


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A running loopback hub; HF_* variables point at it and at an empty cache."""
    import huggingface_hub.constants

    server = FakeHub(tokens=(TOKEN,)).start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved login
    for var in ("HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield server
    server.stop()


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def gt():
    """A tiny OPERA-GT and its weights as OPERA publishes them (a Lightning .ckpt with `state_dict`)."""
    torch.manual_seed(0)
    model = create("opera-gt", preset="tiny")
    return model, _bytes({"state_dict": model.state_dict()})


@pytest.fixture(scope="module")
def acula_ckpt():
    """A tiny AcuLa checkpoint in the published layout (no acula config): encoder + both projection heads."""
    from acula.align.model import AculaModel

    torch.manual_seed(1)
    m = AculaModel(create("opera-gt", preset="tiny"), text_dim=384, hidden_dim=32, proj_dim=16)
    ck = {"epoch": 3, "audio_model_state_dict": m.encoder.state_dict(),
          "audio_projection_mlp_state_dict": m.audio_projection.state_dict(),
          "language_projection_mlp_state_dict": m.language_projection.state_dict()}
    return m, _bytes(ck)


@pytest.fixture
def tiny_acula_entry(monkeypatch):
    """The AcuLa table entry, for a tiny-preset encoder (the real one is OPERA-GT base)."""
    e = hub.PUBLISHED["acula"]
    monkeypatch.setitem(hub.PUBLISHED, "acula", hub.Published(
        e.repo, e.filename, e.revision, e.encoder, prefer=e.prefer,
        config={**e.config, "encoder": {"name": "opera-gt", "preset": "tiny"}}))


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _gets(server: FakeHub, suffix: str) -> int:
    return sum(1 for m, p, _ in server.requests if m == "GET" and p.endswith(suffix))


# ------------------------------------------------------------------------------------------------ by name
def test_download_by_name_caches_and_records_the_weights(fake, gt, tmp_path):
    model, data = gt
    commit = fake.commit(OPERA, {"encoder-operaGT.ckpt": data, "README.md": b"# OPERA\n"})
    enc = create("opera-gt", preset="tiny", pretrained=True)
    assert _same(enc, model)
    rec = enc.config["pretrained"]
    assert rec["repo"] == OPERA and rec["file"] == "encoder-operaGT.ckpt" and rec["revision"] == "main"
    assert rec["commit"] == commit and rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["uri"] == f"hf://{OPERA}@{commit}/encoder-operaGT.ckpt"
    snap = tmp_path / "hf-cache" / "models--evelyn0414--OPERA" / "snapshots" / commit / "encoder-operaGT.ckpt"
    assert snap.is_file()  # the standard Hugging Face cache layout
    create("opera-gt", preset="tiny", pretrained=True)
    assert _gets(fake, "encoder-operaGT.ckpt") == 1  # the second time from the cache
    # a saved config's record is kept and never fetched again
    again = create("opera-gt", preset="tiny", pretrained=rec)
    assert again.config["pretrained"] == rec and _gets(fake, "encoder-operaGT.ckpt") == 1
    # the hf:// route shares the cache and the checks; commands taking checkpoint paths get the pinned source
    assert read_checkpoint(f"hf://{OPERA}/encoder-operaGT.ckpt").format == "lightning"
    assert hub.checkpoint_source("opera-gt", True) == rec["uri"]


def test_pinned_revision_and_sha256(fake, gt, monkeypatch):
    model, data = gt
    first = fake.commit(OPERA, {"encoder-operaGT.ckpt": data})
    torch.manual_seed(5)
    newer = create("opera-gt", preset="tiny")
    fake.commit(OPERA, {"encoder-operaGT.ckpt": _bytes({"state_dict": newer.state_dict()})})
    assert _same(create("opera-gt", preset="tiny", pretrained=True), newer)  # main moved on
    assert _same(create("opera-gt", preset="tiny", pretrained=f"{OPERA}@{first}"), model)
    sha = hashlib.sha256(data).hexdigest()
    pinned = hub.Published(OPERA, "encoder-operaGT.ckpt", first, "opera-gt", sha256=sha)
    monkeypatch.setitem(hub.PUBLISHED, "opera-gt", pinned)
    enc = create("opera-gt", preset="tiny", pretrained=True)
    assert _same(enc, model) and enc.config["pretrained"]["commit"] == first
    # the file at the pinned name changed: refused
    monkeypatch.setitem(hub.PUBLISHED, "opera-gt", hub.Published(OPERA, "encoder-operaGT.ckpt", "main", "opera-gt",
                                                                  sha256=sha))
    with pytest.raises(HubError, match=r"sha256 mismatch .*encoder-operaGT.ckpt@main.*refusing"):
        create("opera-gt", preset="tiny", pretrained=True)
    with pytest.raises(HubError, match=r"revision 'v9' does not exist in Hugging Face repo 'evelyn0414/OPERA'"):
        create("opera-gt", preset="tiny", pretrained=f"{OPERA}@v9")


def test_offline_uses_the_cache_and_names_what_is_missing(fake, gt, monkeypatch):
    import huggingface_hub.utils._http

    # an unreachable hub and a file not cached: huggingface_hub retries for ~23 s first; not here
    monkeypatch.setattr(huggingface_hub.utils._http.time, "sleep", lambda s: None)
    model, data = gt
    fake.commit(OPERA, {"encoder-operaGT.ckpt": data})
    create("opera-gt", preset="tiny", pretrained=True)
    n = len(fake.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _same(create("opera-gt", preset="tiny", pretrained=True), model)
    assert len(fake.requests) == n  # not one request
    with pytest.raises(HubError) as info:
        create("opera-ct", preset="tiny", pretrained=True)
    msg = str(info.value)
    for part in ("encoder-operaCT.ckpt", OPERA, "HF_HUB_OFFLINE=1", "hf download evelyn0414/OPERA encoder-operaCT.ckpt",
                 "--checkpoint", "models--evelyn0414--OPERA"):
        assert part in msg
    monkeypatch.delenv("HF_HUB_OFFLINE")
    fake.stop()  # no network at all
    assert _same(create("opera-gt", preset="tiny", pretrained=True), model)
    with pytest.raises(HubError, match="encoder-operaCE.ckpt.*unreachable.*Place it by hand"):
        create("opera-ce", preset="tiny", pretrained=True)


def test_bad_names_and_missing_files_say_what_exists(fake, gt):
    _, data = gt
    with pytest.raises(HubError, match="no published weights for 'yamnet'; published names: acula, opera-ce, "
                                       "opera-ct, opera-gt.*tflite"):
        create("yamnet", pretrained=True)
    with pytest.raises(HubError, match="unknown pretrained name 'operaXY'; published names: acula, opera-ce"):
        create("opera-gt", pretrained="operaXY")
    with pytest.raises(HubError, match="are for opera-gt, not opera-ct"):
        create("opera-ct", pretrained="acula")
    with pytest.raises(ValueError, match="not both"):
        create("opera-gt", checkpoint="x.ckpt", pretrained=True)
    fake.commit(OPERA, {"encoder-operaGT.ckpt": data, "README.md": b"hi"})
    with pytest.raises(HubError, match=r"has no file 'encoder-operaCT.ckpt'; it has: README.md, encoder-operaGT.ckpt"):
        create("opera-ct", preset="tiny", pretrained=True)
    with pytest.raises(HubError, match="'nobody/nothing' not found.*HF_TOKEN"):
        create("opera-gt", pretrained="nobody/nothing")
    fake.commit("someone/not-acula", {"README.md": b"hi", "weights.bin": b"x"})
    with pytest.raises(HubError, match=r"has no file 'model.safetensors'; it has: README.md, weights.bin"):
        create("opera-gt", pretrained="someone/not-acula")


def test_partial_and_corrupt_downloads_are_never_trusted(fake, gt, tmp_path, monkeypatch):
    import huggingface_hub.file_download

    monkeypatch.setattr(huggingface_hub.file_download.time, "sleep", lambda s: None)  # its retry pauses
    model, data = gt
    commit = fake.commit(OPERA, {"encoder-operaGT.ckpt": data})
    repo = tmp_path / "hf-cache" / "models--evelyn0414--OPERA"
    fake.truncate.add("encoder-operaGT.ckpt")  # the connection drops halfway, every time
    with pytest.raises(HubError, match="cannot fetch 'encoder-operaGT.ckpt'.*Nothing partial was kept"):
        create("opera-gt", preset="tiny", pretrained=True)
    assert not list((repo / "snapshots").rglob("*.ckpt")) and not list((repo / "blobs").glob("*"))
    fake.truncate.clear()
    fake.corrupt.add("encoder-operaGT.ckpt")  # full length, one byte altered on the way
    with pytest.raises(HubError, match="arrived corrupt twice"):
        create("opera-gt", preset="tiny", pretrained=True)
    assert not list((repo / "blobs").glob("*"))
    fake.corrupt.clear()
    assert _same(create("opera-gt", preset="tiny", pretrained=True), model)
    # a cached copy altered later (disk, an interrupted copy by hand): offline it is removed, not used
    blob = (repo / "snapshots" / commit / "encoder-operaGT.ckpt").resolve()
    blob.write_bytes(blob.read_bytes()[:-10])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="was corrupt.*removed; run again online"):
        create("opera-gt", preset="tiny", pretrained=True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert _same(create("opera-gt", preset="tiny", pretrained=True), model)  # fetched afresh


# ------------------------------------------------------------------------------------------------ AcuLa
def test_acula_file_name_is_resolved_from_the_repo_file_list(fake, acula_ckpt, tiny_acula_entry, monkeypatch):
    m, data = acula_ckpt
    commit = fake.commit("tsnngw/AcuLa", {"README.md": b"# AcuLa\n", "acula_operaGT_medgemma_final.pt": data,
                                          "acula_audio_encoder.pt": _bytes(m.encoder.state_dict())})
    enc = create("opera-gt", preset="tiny", pretrained="acula")
    assert _same(enc, m.encoder)
    assert enc.config["pretrained"]["file"] == "acula_operaGT_medgemma_final.pt"
    assert enc.config["pretrained"]["commit"] == commit
    assert _same(create("acula", preset="tiny", pretrained=True), m.encoder)  # by the published name alone
    named = create("opera-gt", preset="tiny", pretrained="tsnngw/AcuLa/acula_audio_encoder.pt")  # one file by name
    assert _same(named, m.encoder) and named.config["pretrained"]["file"] == "acula_audio_encoder.pt"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, the name comes from the cached snapshot
    assert create("opera-gt", preset="tiny", pretrained="tsnngw/AcuLa").config["pretrained"]["file"] == \
        "acula_operaGT_medgemma_final.pt"


def test_weights_file_picking():
    pick = hub.pick_weights_file
    prefer = hub.PUBLISHED["acula"].prefer
    assert pick("r", "main", ["README.md", "ckpt/acula.pt"], prefer) == "ckpt/acula.pt"
    assert pick("r", "main", ["acula_epoch_10.pt", "acula_final.pt", "optimizer.bin"], prefer) == "acula_final.pt"
    assert pick("r", "main", ["model.safetensors", "other.safetensors"], prefer) == "model.safetensors"
    with pytest.raises(HubError, match="has no weights file .*it has: README.md, config.json"):
        pick("r", "main", ["README.md", "config.json"], prefer)
    with pytest.raises(HubError, match=r"several weights files \(a.pt, b.pt\); name one: pretrained='r/<file>'"):
        pick("r", "main", ["a.pt", "b.pt"], prefer)


def test_acula_checkpoint_gives_encoder_and_both_heads_to_zeroshot(fake, acula_ckpt, tiny_acula_entry, tmp_path,
                                                                  clips):
    from acula.evaluate.zeroshot import load_aligned

    m, data = acula_ckpt
    fake.commit("tsnngw/AcuLa", {"acula_final.pt": data})
    src = hub.aligned_source("acula")
    assert src.startswith("hf://tsnngw/AcuLa@") and src.endswith("/acula_final.pt")
    model, ck = load_aligned(src)
    assert _same(model.encoder, m.encoder) and _same(model.audio_projection, m.audio_projection)
    assert _same(model.language_projection, m.language_projection)
    assert json.loads(ck.config["teacher"])["model"] == "google/medgemma-4b-pt"  # from the table: the file has none
    # `acula retrieve` straight from the published name (the text side with MiniLM: 384-d like the test heads)
    out = tmp_path / "ret"
    assert main(["retrieve", "--pretrained", "acula", "--manifest", str(clips), "--teacher", "minilm",
                 "--similarity", "raw", "--out", str(out)]) == 0
    assert json.loads((out / "retrieval.json").read_text())["checkpoint"] == src


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """8 short recordings, 4 subjects, with reports, a label and a dataset column; one subject to exclude."""
    d = tmp_path_factory.mktemp("hub-clips")
    rng = np.random.default_rng(0)
    reports = ["Crackles are present at the left base.", "No crackles or wheezes.",
               "A holosystolic murmur graded III/VI.", "Murmur absent; normal heart sounds."]
    rows = ["audio_path,Gen_Report,subject_id,dataset,label"]
    for i in range(10):
        t = np.arange(16000 * 3) / 16000
        wave = 0.1 * rng.normal(size=t.size) + 0.2 * np.sin(2 * np.pi * (100 + 50 * i) * t)
        sf.write(d / f"c{i}.wav", wave.astype(np.float32), 16000)
        rows.append(f"{d / f'c{i}.wav'},{reports[i % 4]},s{i // 2},{'heart' if i % 4 >= 2 else 'lung'},{i % 2}")
    (d / "m.csv").write_text("\n".join(rows) + "\n")
    (d / "test_subjects.txt").write_text("s4\n")
    return d / "m.csv"


def test_pretrained_flag_on_an_encoder_command_records_the_weights(fake, gt, clips, tmp_path):
    from acula.extract import Embeddings

    _, data = gt
    commit = fake.commit(OPERA, {"encoder-operaGT.ckpt": data})
    out = tmp_path / "e.npz"
    assert main(["embed", str(clips), *TINY, "--pretrained", "--out", str(out)]) == 0
    cfg = Embeddings.load(out).config
    assert cfg["checkpoint"] == f"hf://{OPERA}@{commit}/encoder-operaGT.ckpt"
    assert cfg["encoder"]["pretrained"]["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def run_dir(clips, tmp_path_factory):
    """A finished `acula align` run of a tiny OPERA-GT, one subject excluded, trackers on."""
    out = tmp_path_factory.mktemp("hub-run") / "run"
    assert main(["align", "--manifest", str(clips), *TINY, "--epochs", "2", "--batch-size", "4",
                 "--exclude-subjects", str(clips.parent / "test_subjects.txt"), "--align-within", "none",
                 "--heldout-fraction", "0.5", "--report-to", "tensorboard", "--out", str(out)]) == 0
    return out


def _bench(tmp_path: Path) -> Path:
    d = tmp_path / "bench"
    d.mkdir()
    rows = [["task", "name", "dataset", "metric", "mean", "std", "n_seeds", "n_train", "n_val", "n_test",
             "std_folds", "status", "error"],
            ["T1", "murmur", "CirCor", "AUROC", "0.8123", "0.0100", "5", "60", "20", "20", "", "ok", ""],
            ["T7", "respiratory rate", "demo", "MAE", "4.3400", "0.2000", "5", "60", "20", "20", "", "ok", ""],
            ["T9", "wheeze", "ICBHI", "AUROC", "", "", "0", "", "", "", "", "error", "no data"]]
    with open(d / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    (d / "run.json").write_text(json.dumps({"seeds": [0, 1, 2, 3, 4], "head": "linear", "tasks": ["T1", "T7", "T9"]}))
    return d


def test_publish_writes_a_hub_ready_folder_with_a_model_card(run_dir, tmp_path):
    from huggingface_hub import ModelCard
    from safetensors import safe_open

    card_dir = tmp_path / "card"
    assert main(["publish", str(run_dir), "--bench", str(_bench(tmp_path)), "--name", "me/tiny-acula",
                 "--out", str(card_dir)]) == 0
    assert sorted(p.name for p in card_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    with safe_open(str(card_dir / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("projection_heads.audio.") for k in keys)
    assert any(k.startswith("projection_heads.language.") for k in keys)
    assert not any(k.startswith("decoder") for k in keys)
    config = json.loads((card_dir / "config.json").read_text())
    assert config["encoder"] == {"name": "opera-gt", "preset": "tiny"} and config["decoder"] is False
    assert config["contract"]["sample_rate"] == 16000 and json.loads(config["teacher"])["model"] == "minilm"
    assert config["loss"]["loss"] == "cka" and config["train"]["epochs"] == 2
    data = config["alignment_data"]
    assert data["exclude_subjects"]["subjects"] == 1 and data["exclude_subjects"]["recordings"] == 2
    assert data["recordings"] + data["heldout_recordings"] == 8 and data["manifest"] == "m.csv"
    card = ModelCard.load(card_dir / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "feature-extraction"
    assert meta["library_name"] == "acula" and "acula" in meta["tags"]
    results = meta["model-index"][0]["results"]
    assert [(r["dataset"]["name"], r["metrics"][0]["type"], r["metrics"][0]["value"]) for r in results] == \
        [("CirCor", "roc_auc", 0.8123), ("demo", "mae", 4.34)]
    text = card.text
    for section in ("## Intended use", "## Alignment data", "## Evaluation", "## Limitations", "## How to load"):
        assert section in text
    assert "the 1 subjects listed in `test_subjects.txt` (2 recordings" in text
    assert "| murmur | CirCor | AUROC | 0.812 ± 0.010 | 5 | 60 / 20 / 20 |" in text
    assert "failed: no data" in text
    assert 'create("opera-gt", pretrained="me/tiny-acula")' in text
    assert hashlib.sha256((card_dir / "model.safetensors").read_bytes()).hexdigest() in text


def test_push_and_load_back_by_name_gives_the_same_embeddings(fake, run_dir, clips, tmp_path, monkeypatch, capsys):
    from acula.evaluate.zeroshot import load_aligned
    from acula.extract import Embeddings

    card_dir = tmp_path / "card"
    argv = ["publish", str(run_dir), "--out", str(card_dir), "--push", "me/tiny-acula"]
    assert main(argv) == 2  # no token
    assert "set HF_TOKEN" in capsys.readouterr().err and "me/tiny-acula" not in fake.repos
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    assert main(argv) == 2
    assert "token was refused" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert TOKEN not in printed.out + printed.err
    assert not [p for p in card_dir.iterdir() if TOKEN.encode() in p.read_bytes()]
    files = fake.repos["me/tiny-acula"]["commits"][fake.resolve("me/tiny-acula", "main")]
    assert {"README.md", "config.json", "model.safetensors"} <= set(files)
    monkeypatch.delenv("HF_TOKEN")
    # by name from the hub, against the run's own encoder file
    a, b = tmp_path / "run.npz", tmp_path / "hub.npz"
    assert main(["embed", str(clips), *TINY, "--checkpoint", str(run_dir / "encoder.safetensors"),
                 "--out", str(a)]) == 0
    assert main(["embed", str(clips), "--encoder", "opera-gt", "--pretrained", "me/tiny-acula", "--out", str(b)]) == 0
    ea, eb = Embeddings.load(a), Embeddings.load(b)
    assert ea.paths == eb.paths and np.array_equal(ea.embeddings, eb.embeddings)
    assert eb.config["encoder"]["pretrained"]["repo"] == "me/tiny-acula"
    enc = create("opera-gt", pretrained="me/tiny-acula")
    assert enc.config["preset"] == "tiny"  # the options come from the published config
    with pytest.raises(HubError, match="published with preset='tiny'"):
        create("opera-gt", preset="base", pretrained="me/tiny-acula")
    with pytest.raises(HubError, match="holds a opera-gt encoder, not opera-ct"):
        create("opera-ct", pretrained="me/tiny-acula")
    # both heads come back for zero-shot / retrieval, equal to the run's final checkpoint
    published, _ = load_aligned(hub.aligned_source("me/tiny-acula"))
    run_model, _ = load_aligned(run_dir / "acula_final.pt")
    assert _same(published.audio_projection, run_model.audio_projection)
    assert _same(published.language_projection, run_model.language_projection)


def test_a_run_started_from_published_weights_says_so_in_its_card(fake, gt, clips, tmp_path):
    from huggingface_hub import ModelCard

    _, data = gt
    commit = fake.commit(OPERA, {"encoder-operaGT.ckpt": data})
    run = tmp_path / "run"
    assert main(["align", "--manifest", str(clips), *TINY, "--pretrained", "--epochs", "1", "--batch-size", "4",
                 "--out", str(run)]) == 0
    card_dir = tmp_path / "card"
    assert main(["publish", str(run), "--out", str(card_dir)]) == 0
    config = json.loads((card_dir / "config.json").read_text())
    assert config["initialised_from"]["commit"] == commit and "pretrained" not in config["encoder"]
    assert config["initialised_from"]["sha256"] == hashlib.sha256(data).hexdigest()
    card = ModelCard.load(card_dir / "README.md")
    assert card.data.base_model == OPERA and "model-index" not in card.data.to_dict()
    assert f"`{OPERA}` `encoder-operaGT.ckpt` at commit `{commit}`" in card.text
    assert "No benchmark results were given" in card.text and "No subject exclusion was recorded" in card.text


# ------------------------------------------------------------------------------------------------ trackers
def test_align_reports_losses_throughput_and_heldout_cka_to_tensorboard(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))  # hparams go to a sub-folder
    assert logs
    acc = EventAccumulator(str(logs[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/align", "train/mam", "train/lr", "train/samples_per_s", "heldout/cka"} <= tags
    assert len(acc.Scalars("heldout/cka")) == 2  # once per epoch
    rows = list(csv.DictReader(open(run_dir / "train_log.csv")))
    assert [r["heldout_cka"] != "" for r in rows].count(True) == 2


def test_report_to_choices_and_wandb_offline(clips, tmp_path, monkeypatch):
    from acula.tracking import parse_report_to

    assert parse_report_to("tensorboard, wandb") == ("tensorboard", "wandb")
    assert parse_report_to("none") == () and parse_report_to("all") == ("tensorboard", "wandb")
    with pytest.raises(ValueError, match="unknown tracker.*mlflow"):
        parse_report_to("mlflow")
    assert main(["align", "--manifest", str(clips), *TINY, "--report-to", "comet", "--out", str(tmp_path / "x")]) == 2
    try:
        import wandb  # noqa: F401
    except ModuleNotFoundError:
        import sys

        monkeypatch.setitem(sys.modules, "wandb", None)
        with pytest.raises(ValueError, match=r"pip install 'acula\[wandb\]'"):
            main_raise(["align", "--manifest", str(clips), *TINY, "--epochs", "1", "--batch-size", "4",
                        "--report-to", "wandb", "--out", str(tmp_path / "w")])
        pytest.skip("wandb is not installed (optional extra acula[wandb]): its offline run is not exercised")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    out = tmp_path / "w"
    assert main(["align", "--manifest", str(clips), *TINY, "--epochs", "1", "--batch-size", "4",
                 "--report-to", "wandb", "--out", str(out)]) == 0
    assert list((out / "wandb").glob("offline-run-*"))


def main_raise(argv):
    """Run a command and let its error propagate (the CLI turns it into exit code 2)."""
    from acula.cli import build_parser

    args = build_parser(argv).parse_args(argv)
    return args.func(args)


def test_finetune_reports_epochs_to_tensorboard(clips, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from acula.evaluate.finetune import FinetuneConfig, run_finetune
    from acula.evaluate.tasks import csv_task

    task_csv = tmp_path / "task.csv"
    rows = list(csv.DictReader(open(clips)))
    task_csv.write_text("audio_path,label,subject_id\n" + "".join(
        f"{r['audio_path']},{r['label']},{r['subject_id']}\n" for r in rows))
    torch.manual_seed(0)
    out = tmp_path / "ft"
    run_finetune(create("opera-gt", preset="tiny"), [csv_task(task_csv, task_id="toy")], out, seeds=(0,),
                 cfg=FinetuneConfig(epochs=2, patience=5), log=lambda s: None, report_to=("tensorboard",))
    logs = sorted((out / "tensorboard").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(logs[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert any(t.startswith("toy/seed0") and t.endswith("/train_loss") for t in tags), tags
    assert any(t.endswith("/clips_per_s") for t in tags) and any(t.endswith("/val_metric") for t in tags)
