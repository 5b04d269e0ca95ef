"""DistributedDataParallel on CPU (gloo): 2 processes == 1 process on the same global batch.

The two ranks are real processes (``torch.multiprocessing.spawn``) that join a gloo process
group through :func:`cloud.training.distributed.init_distributed`, exactly as under torchrun.
Dropout is off (eval mode) and the optimiser is plain SGD so the update is proportional to the
gradient: a missing or wrong AllReduce average would show.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from cloud.data import SplitSpec, default_splits
from cloud.model import AutoGLMModel
from cloud.model.checkpoint import read_checkpoint_meta
from cloud.training.batches import encode_split
from cloud.training.distributed import DistContext, cleanup, init_distributed, shard, wrap_ddp
from cloud.training.trainer import RouterLogits, train_step
from contracts.routes import DEFAULT_ROUTES
from contracts.tokenizer import TextTokenizer

GLOBAL_BATCH = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_step(base: Path, ctx: DistContext, indices: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Seeded model, one SGD step on this rank's share of a fixed global batch; adapter weights after."""
    torch.manual_seed(0)
    model = AutoGLMModel.from_pretrained(base)
    aset = model.add_adapter_set("default", list(DEFAULT_ROUTES), bottleneck=8)
    with torch.no_grad():  # non-zero up-projections so every adapter weight gets a gradient
        for adapter in aset.adapters:
            adapter.up.weight.normal_(std=0.05)
    model.eval()  # no dropout: the ranks' forward passes are deterministic
    module = wrap_ddp(RouterLogits(model, "default"), ctx)
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.5)
    data = encode_split(
        default_splits(0, SplitSpec(train_per_template=2, eval_per_template=1))["train"],
        TextTokenizer(base),
        list(DEFAULT_ROUTES),
    )
    global_batch = np.arange(GLOBAL_BATCH) if indices is None else indices
    ids, mask, labels = data.batch(shard(global_batch, ctx), ctx.device)
    train_step(module, optimizer, ids, mask, labels, max_grad_norm=float("inf"))
    return {k: v.detach().clone() for k, v in aset.state_dict().items()}


def _worker(rank: int, world: int, port: int, base: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    ctx = init_distributed()
    assert ctx.enabled and ctx.world_size == world and ctx.rank == rank
    weights = one_step(Path(base), ctx)
    save_file(weights, f"{out}.rank{rank}")
    cleanup(ctx)


def test_two_process_ddp_step_equals_single_process_step(tiny_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    mp.spawn(_worker, args=(2, _free_port(), str(tiny_base), str(out)), nprocs=2, join=True)
    rank0, rank1 = load_file(f"{out}.rank0"), load_file(f"{out}.rank1")
    single = one_step(tiny_base, DistContext())
    half_only = one_step(tiny_base, DistContext(), np.arange(GLOBAL_BATCH // 2))
    initial = {
        k: v
        for k, v in AutoGLMModel.from_pretrained(tiny_base)
        .add_adapter_set("x", list(DEFAULT_ROUTES), 8)
        .state_dict()
        .items()
    }
    for k, v in single.items():
        assert torch.allclose(rank0[k], rank1[k], atol=1e-7), f"ranks diverged on {k}"
        assert torch.allclose(rank0[k], v, atol=1e-5), f"DDP != single process on {k}"
    assert any(not torch.allclose(single[k], half_only[k], atol=1e-5) for k in single), (
        "test cannot tell averaging apart"
    )
    assert any(not torch.allclose(single[k], initial[k]) for k in single if "up" in k)


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
    reason="torchrun not installed",
)
def test_autoglm_train_under_torchrun_two_ranks(tiny_base: Path, tmp_path: Path) -> None:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    if not Path(torchrun).exists():
        torchrun = shutil.which("torchrun") or "torchrun"
    out = tmp_path / "ckpt"
    cmd = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "autoglm",
        "train",
        "--base",
        str(tiny_base),
        "--out",
        str(out),
        "--tiny",
        "--epochs",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    meta = read_checkpoint_meta(out)
    assert meta.training["world_size"] == 2 and meta.training["finished"]
    assert proc.stdout.count("checkpoint:") == 1  # only rank 0 reports
