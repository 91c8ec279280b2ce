"""HEAR API over registered encoders; the model card's initialize_pretrained_model."""

import numpy as np
import pytest
import torch

import acula
from numerics import assert_close, encoder_tol


@pytest.mark.numerics
def test_hear_api_on_any_length():
    model = acula.load_model("opera-gt", preset="tiny")
    assert model.sample_rate == 16000 and model.scene_embedding_size == model.encoder.feature_dim
    audio = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 16000 * 20)).astype(np.float32)) * 0.1
    emb, ts = acula.get_timestamp_embeddings(audio, model)
    assert emb.shape[:2] == ts.shape and emb.shape[0] == 2 and emb.shape[2] == model.timestamp_embedding_size
    assert torch.all(ts[:, 1:] > ts[:, :-1])
    scene = acula.get_scene_embeddings(audio, model)
    assert scene.shape == (2, model.scene_embedding_size) and torch.isfinite(scene).all()
    short = acula.get_scene_embeddings(audio[:, :800], model)  # 0.05 s
    assert torch.isfinite(short).all()
    # a sound's embedding does not depend on its batch-mates
    alone = acula.get_scene_embeddings(audio[1:], model)
    assert_close(alone, scene[1:], encoder_tol(model.encoder, scene, front_end=True), "alone vs in a batch")
    with pytest.raises(ValueError, match="n_sounds"):
        acula.get_scene_embeddings(audio[0], model)


def test_initialize_pretrained_model_names():
    m = acula.initialize_pretrained_model("operaCE", preset="tiny")
    x = torch.rand(2, 256, 64)
    assert m.forward_feature(x).shape == (2, m.feature_dim)
    with pytest.raises(ValueError, match="operaGT"):
        acula.initialize_pretrained_model("operaXX")
