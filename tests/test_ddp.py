"""MORSE under DistributedDataParallel, on the CPU with the gloo backend and two processes.

nnU-Net's own DDP path (-num_gpus 2) needs CUDA: run_training asserts a CUDA device and the trainer wraps the network
with DDP(device_ids=[local_rank]), which torch refuses for a CPU module. What MORSE adds to that path is tested here:
the network under DDP (different experts dropped on each rank, gradients identical after the all-reduce, no unused
parameters) and the unwrapping of DDP(torch.compile(network)).
"""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from nnunetv2_morse.head import rendering_loss
from nnunetv2_morse.network import MorseNetwork
from nnunetv2_morse.trainers.morse import unwrap_network
from plans import SmallMORSE, build


def _train_step_on_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    network = build(SmallMORSE, 2, True)
    ddp = DistributedDataParallel(network)
    torch.manual_seed(100 + rank)  # each rank: its own batch, points and dropped experts
    for _ in range(2):  # a parameter left out of the first step's graph would fail the second forward
        network.zero_grad()
        out = ddp(torch.randn(2, 1, 32, 32), torch.tensor(0.5))
        target = torch.randint(0, 3, (2, 1, 32, 32))
        loss = sum(o.float().mean() for o in out.seg) + rendering_loss(out.point_logits, out.point_coords, target)
        loss.backward()
    grads = torch.cat([p.grad.flatten() for p in network.parameters()])
    torch.save({"grads": grads, "points": out.point_coords}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ddp_gradients_agree_across_ranks(tmp_path):
    mp.spawn(_train_step_on_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert not torch.equal(rank0["points"], rank1["points"])
    assert rank0["grads"].abs().sum() > 0
    torch.testing.assert_close(rank0["grads"], rank1["grads"])


def test_unwrap_network_finds_the_morse_network_inside_nnunets_wrappers(tmp_path):
    network = build(SmallMORSE, 2, True)
    assert unwrap_network(network) is network
    assert unwrap_network(torch.compile(network)) is network
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        assert unwrap_network(DistributedDataParallel(torch.compile(network))) is network
        assert isinstance(unwrap_network(DistributedDataParallel(network)), MorseNetwork)
    finally:
        dist.destroy_process_group()
