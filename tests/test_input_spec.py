"""InputSpec (one vocabulary and one key for encoder inputs), the registry's specs, and the one pooling loop."""

import numpy as np
import pytest
import torch

from acula.audio import frontend
from acula.audio.spec import InputSpec
from acula.encoders.base import InputContract
from acula.encoders.registry import bench_spec
from acula.evaluate.tasks import InputPolicy, csv_task, get_task
from acula.features import Pooler, pool_clips

C = InputContract()


def test_fingerprint_of_the_cache_policies_is_the_key_caches_were_built_with():
    """Caches built before InputSpec keep their key: the acula/opera fingerprints are the old settings' hash."""
    for policy, samples in (("acula", 131000), ("opera", int(C.window_seconds * 16000))):
        old = frontend.fingerprint(frontend="logmel", sample_rate=16000, n_mels=64, policy=policy,
                                   window_samples=samples, frontend_version=frontend.FRONTEND_VERSION)
        assert InputSpec.of(C, policy).fingerprint(C) == old


def test_every_setting_that_changes_the_inputs_changes_the_fingerprint():
    specs = [InputSpec("acula", 2.0), InputSpec("acula", 2.0, padding="repeat"), InputSpec("acula", 3.0),
             InputSpec("opera", 2.0), InputSpec("whole"), InputSpec("whole", trimming="silence"),
             InputSpec("whole", 2.0, padding="repeat"), InputSpec("whole", 2.0, padding="zero"),
             InputSpec("whole", 1.0, padding="zero"), InputSpec("cover", 2.0)]
    assert len({s.fingerprint(C) for s in specs}) == len(specs)
    assert InputSpec("acula", 2) == InputSpec("acula", 2.0, padding="zero")  # defaults filled in, numbers by value


@pytest.mark.parametrize("bad", [dict(policy="nope"), dict(policy="opera", seconds=2, trimming=None, padding="zero"),
                                 dict(policy="acula"), dict(policy="whole", padding="repeat")])
def test_impossible_specs_are_refused(bad):
    with pytest.raises(ValueError):
        InputSpec(**bad)


def test_benchmark_inputs_come_from_the_registry():
    assert get_task("T13").input_policy("opera-ct") == bench_spec("opera-ct", "T13") == InputPolicy("whole", 20, "zero")
    assert get_task("T7").input_policy("opera-ce") == InputPolicy("whole", 8)
    assert get_task("yaseen-4class").input_policy("opera-gt") == InputSpec("opera", 4.064)
    assert bench_spec("yamnet", "T7") is None
    named_like_a_task = csv_task("/nowhere/T7.csv")  # a CSV task gets OPERA's CSV-task input, whatever its name
    assert named_like_a_task.input_policy("opera-ce") == InputPolicy("whole", 2)


def test_repeat_padding_fills_a_short_clip_with_itself():
    wave = np.arange(1, 5, dtype=np.float32)
    contract = InputContract(sample_rate=4, frontend="waveform")
    got = InputSpec("acula", 2.0, padding="repeat").windows(wave, contract)
    np.testing.assert_array_equal(got, frontend.repeat_pad(wave, wave, 8)[None])
    np.testing.assert_array_equal(InputSpec("acula", 2.0).windows(wave, contract), [[1, 2, 3, 4, 0, 0, 0, 0]])


def test_pooler_bounds_batches_and_averages_in_window_order():
    batches = []

    def forward(x):
        batches.append(len(x))
        return x.sum(dim=1, keepdim=True)

    clips = [torch.arange(6.0).view(3, 2), torch.arange(4.0).view(2, 2) + 10]
    got = pool_clips(forward, clips, batch_size=2)
    assert batches == [2, 2, 1]
    torch.testing.assert_close(got, torch.tensor([[5.0], [23.0]]), rtol=0, atol=0)


def test_pooler_without_a_batch_size_sends_each_shape_once():
    shapes = []
    pooler = Pooler(lambda x: shapes.append(tuple(x.shape)) or x.flatten(1).mean(1, keepdim=True))
    for i, n in enumerate((3, 5, 3)):
        pooler.add(i, torch.ones(1, n) * i)
    means = pooler.finish()
    assert shapes == [(2, 3), (1, 5)] and [float(means[i]) for i in range(3)] == [0.0, 1.0, 2.0]
