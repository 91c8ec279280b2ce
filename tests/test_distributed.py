"""N processes x batch b give the loss and gradients of one process with batch N*b (gloo, CPU)."""

import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from numerics import Shape, assert_close, net_shape, reorder_tol, scale_of  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(world: int, out: str):
    from test_trainer import _cfg, _data, _model

    from acula.align.trainer import AlignmentData, Trainer

    cfg = _cfg(epochs=1, batch_size=8, lr=1e-2, warmup_steps=0)
    data = _data(n=16)  # three datasets: the per-group CKA needs the group ids gathered like the projections
    data = AlignmentData(data.inputs, data.text_emb, groups=np.array(["heart", "lung", "cough", "lung"] * 4))
    return Trainer(_model(), data, cfg, out)


def _one_step(tr):
    """Loss and gradients of the first global batch."""
    perm = tr._permutation(0)
    local = tr.cfg.batch_size // tr.world
    idx = perm[tr.rank * local:(tr.rank + 1) * local]
    x, t = tr.data.batch(idx)
    loss, parts = tr.compute_loss(x, t, torch.from_numpy(tr.data.groups[idx]))
    tr.acc.backward(loss)
    grads = {n: p.grad.detach().clone() for n, p in tr.acc.unwrap_model(tr.model).named_parameters()
             if p.grad is not None}
    return parts["loss"], grads


def _worker(rank: int, world: int, port: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), ACCELERATE_USE_CPU="true")
    torch.set_num_threads(1)
    tr = _setup(world, out)
    assert tr.world == world, f"accelerate saw {tr.world} processes"
    loss, grads = _one_step(tr)
    if rank == 0:
        torch.save({"loss": loss, "grads": grads}, Path(out) / "dist.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    # skip the interpreter's teardown: gloo's threads can abort in C++ destructors while the other rank exits
    # ("terminate called without an active exception", SIGABRT), failing a run whose results are already saved
    os._exit(0)


@pytest.mark.numerics
@pytest.mark.timeout(300)
def test_two_processes_match_one_process(tmp_path):
    single = _setup(1, str(tmp_path / "single"))
    loss1, grads1 = _one_step(single)
    port = _free_port()
    mp.start_processes(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    dist = torch.load(tmp_path / "dist.pt", weights_only=True)
    # half batches per process, then gathered: the model and the loss's batch sums (Grams, centring, HSIC over
    # 8 x 8 pairs) run in another order; the gradients go back as deep again and are summed over the processes
    forward = net_shape(single.model, exclude=()) + Shape(3, 64)
    assert_close(dist["loss"], loss1, reorder_tol(scale_of(loss1), forward), "loss")
    assert set(dist["grads"]) == set(grads1)
    backward = Shape(2 * forward.depth + 1, forward.fan_in)
    # a bias's gradient sums the per-sample terms its weight's gradient is made of (centring in CKA cancels the
    # last bias's sum to ~0): the terms' size is the module's largest gradient
    module = {k: k.rsplit(".", 1)[0] for k in grads1}
    for k, g in grads1.items():
        scale = scale_of(*(h for j, h in grads1.items() if module[j] == module[k]))
        assert_close(dist["grads"][k], g, reorder_tol(scale, backward), k)
