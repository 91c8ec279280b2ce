"""Security: pickled checkpoints never run code unless trusted, remote code stays off, API keys stay in memory.

The malicious checkpoint is a real one: its `__reduce__` creates a marker file when unpickled, and a
control test shows that it does exactly that once `trust_checkpoint=True` is given.
"""

from __future__ import annotations

import inspect
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from acula.cli import main
from acula.encoders import create
from acula.encoders.checkpoint import CheckpointError, load_encoder

SECRET = "sk-test-SECRET-4b1d9e"
TINY = ["--encoder", "opera-gt", "--preset", "tiny"]


class Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for any code an attacker wants to run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """(checkpoint with a payload next to valid OPERA-style weights, marker path)."""
    torch.manual_seed(0)
    state = create("opera-gt", preset="tiny").state_dict()
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": state, "callbacks": Payload(marker)}, path)
    assert not marker.exists()
    return path, marker


@pytest.fixture
def audio(tmp_path) -> list[Path]:
    t = np.arange(2 * 16000) / 16000
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], (0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t)).astype(np.float32), 16000)
    return paths


def _manifest(tmp_path: Path, audio: list[Path]) -> Path:
    m = tmp_path / "manifest.csv"
    m.write_text("audio_path,Gen_Report\n" + "".join(f"{p},Report {i}: murmur grade {i}.\n"
                                                      for i, p in enumerate(audio)))
    return m


def test_control_the_payload_runs_when_trusted(evil):
    path, marker = evil
    model = create("opera-gt", preset="tiny", checkpoint=str(path), trust_checkpoint=True)
    assert marker.exists()  # so the refusals below are refusals of a live payload
    assert model.feature_dim == 128


def test_library_refuses_the_pickle_payload(evil):
    path, marker = evil
    with pytest.raises(CheckpointError, match="--trust-checkpoint") as info:
        create("opera-gt", preset="tiny", checkpoint=str(path))
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="trust_checkpoint=True"):
        load_encoder(path)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["embed", "align", "convert"])
def test_cli_refuses_the_pickle_payload(command, evil, audio, tmp_path, capsys):
    path, marker = evil
    out = tmp_path / "out"
    argv = {
        "embed": ["embed", *map(str, audio), *TINY, "--checkpoint", str(path), "--out", str(out) + ".npz"],
        "align": ["align", "--manifest", str(_manifest(tmp_path, audio)), *TINY, "--checkpoint", str(path),
                  "--epochs", "1", "--batch-size", "2", "--out", str(out)],
        "convert": ["convert", str(path), *TINY, "--out", str(out) + ".safetensors"],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--trust-checkpoint" in err and str(path) in err
    assert not marker.exists()
    assert not any(tmp_path.glob("out*"))


def test_a_planted_resume_checkpoint_is_not_unpickled(evil, audio, tmp_path):
    """`acula align` resumes from OUT/checkpoint_last.pt: a file planted there must not run either."""
    path, marker = evil
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint_last.pt").write_bytes(path.read_bytes())
    argv = ["align", "--manifest", str(_manifest(tmp_path, audio)), *TINY, "--epochs", "1", "--batch-size", "2",
            "--out", str(out)]
    try:
        rc = main(argv)
    except Exception as e:  # noqa: BLE001 - any refusal will do here; how cleanly is the next test
        rc = f"{type(e).__name__}: {e}"
    assert rc != 0
    assert not marker.exists()
    assert not (out / "acula_final.pt").exists()


def test_an_unreadable_resume_checkpoint_is_a_clean_error(evil, audio, tmp_path, capsys):
    path, _ = evil
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint_last.pt").write_bytes(path.read_bytes()[:5000])  # e.g. copied from a full disk
    argv = ["align", "--manifest", str(_manifest(tmp_path, audio)), *TINY, "--epochs", "1", "--batch-size", "2",
            "--out", str(out)]
    assert main(argv) == 2
    assert "checkpoint_last.pt" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- remote code


def test_trust_remote_code_is_off_unless_asked(monkeypatch):
    from acula.encoders import hf
    from acula.text.teacher import Teacher

    for fn in (Teacher.__init__, hf.create_hf_ast, hf.create_hf_clap):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False, fn
    minilm = Teacher("minilm")
    assert minilm.trust_remote_code is False and minilm._hf_kwargs()["trust_remote_code"] is False
    seen = []

    def refuse(name, **kw):
        seen.append(kw.get("trust_remote_code"))
        raise OSError("offline test")

    import transformers

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refuse)
    with pytest.raises(OSError):
        Teacher("some-org/some-model")
    for name in ("hf-ast", "hf-clap"):
        with pytest.raises(OSError):
            create(name, model="some-org/some-model")
    assert seen == [False, False, False]


def test_cli_teacher_never_asks_for_remote_code(audio, tmp_path, monkeypatch):
    seen = []

    def refuse(name, **kw):
        seen.append(kw.get("trust_remote_code"))
        raise OSError("offline test")

    import transformers

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refuse)
    argv = ["align", "--manifest", str(_manifest(tmp_path, audio)), *TINY, "--teacher", "some-org/some-model",
            "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "run")]
    with pytest.raises(OSError):
        main(argv)
    assert seen == [False]


# ------------------------------------------------------------------------------------- API keys

KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "ACULA_TEST_LLM_KEY")


def _files_containing(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_api_keys_in_the_environment_never_reach_align_outputs(audio, tmp_path, monkeypatch, capsys):
    for v in KEY_VARS:
        monkeypatch.setenv(v, f"{SECRET}-{v}")
    out = tmp_path / "run"
    argv = ["align", "--manifest", str(_manifest(tmp_path, audio)), *TINY, "--epochs", "1", "--batch-size", "4",
            "--tensorboard", "--out", str(out)]
    assert main(argv) == 0
    assert (out / "acula_final.pt").is_file() and any((out / "tensorboard").iterdir())
    assert main(["embed", *map(str, audio), *TINY, "--out", str(out / "emb.npz")]) == 0
    printed = capsys.readouterr()
    assert _files_containing(out, SECRET) == []
    assert SECRET not in printed.out + printed.err


class EchoLLM:
    """An OpenAI-compatible server on loopback that answers with the template plus what it was sent
    (the Authorization header included): the worst case of a key coming back in the model's text."""

    def __init__(self, answers: dict[str, str], echo_key: bool):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                answer = next(a for marker, a in answers.items() if marker in prompt)
                if echo_key:
                    answer += f" Reference: {self.headers.get('Authorization')}."
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()
        self.http.server_close()


def _rewrite_run(tmp_path: Path, monkeypatch, echo_key: bool) -> Path:
    """`acula reports build` + rewrite, as the CLI glue does it; returns the output folder."""
    rewrite = pytest.importorskip("acula.text.rewrite")
    from acula.text.reports import build_reports, write_reports_csv

    for v in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    rows = build_reports("coughvid", records=[{"uuid": "u1", "status": "healthy", "age": "34", "gender": "female"}])
    server = EchoLLM({"": rows[0]["Gen_Report"]}, echo_key)
    out = tmp_path / "reports"
    try:
        import argparse

        p = argparse.ArgumentParser()
        p.add_argument("--out")
        rewrite.add_rewrite_args(p)
        args = p.parse_args(["--out", str(out / "reports.csv"), "--rewrite", "openai", "--llm-url", server.url,
                             "--llm-model", "echo", "--rewrite-cache", str(out / "cache"), "--llm-retries", "0"])
        rows = rewrite.apply_rewrite(rows, args)
        write_reports_csv(rows, out / "reports.csv")
    finally:
        server.close()
    assert (out / "reports.csv").is_file() and (out / "reports.rewrite.jsonl").is_file()
    assert any((out / "cache").rglob("*.json"))
    return out


def test_api_key_never_reaches_rewrite_outputs(tmp_path, monkeypatch):
    out = _rewrite_run(tmp_path, monkeypatch, echo_key=False)
    assert _files_containing(out, SECRET) == []


def test_api_key_echoed_by_the_llm_never_reaches_rewrite_outputs(tmp_path, monkeypatch):
    out = _rewrite_run(tmp_path, monkeypatch, echo_key=True)
    assert _files_containing(out, SECRET) == []
