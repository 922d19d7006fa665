"""Numerics under reduced precision and degenerate batches."""
import dataclasses

import pytest
import torch

from nnunetv2_morse.encoding import FourierPositionalEncoding
from nnunetv2_morse.experts import PointMixtureOfExperts, draw_kept_experts
from nnunetv2_morse.head import PointHead, rendering_loss
from nnunetv2_morse.points import select_uncertain_voxels
from nnunetv2_morse.trainers import family, short
from plans import SMALL, SmallMORSE, build


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_encoding_and_head_stay_finite_under_autocast(dtype):
    torch.manual_seed(0)
    encoding = FourierPositionalEncoding(3, num_frequencies=64, std=5000.0)  # phases up to ~1e5 rad
    head = PointHead(32, 4, (64, 64, 64), encoding)
    coords = torch.cat((torch.rand(1, 500, 3), torch.ones(1, 10, 3), torch.zeros(1, 10, 3)), dim=1)
    features, coarse = torch.randn(1, 520, 32) * 100, torch.randn(1, 520, 4) * 50
    with torch.autocast("cpu", dtype=dtype):
        psi = encoding(coords)
        out = head(features, coarse, coords)
    assert psi.dtype == torch.float32 and torch.isfinite(psi).all()
    assert torch.isfinite(out).all()
    exact = encoding(coords.double().float())
    torch.testing.assert_close(psi, exact)


def autocast_or_not(dtype: torch.dtype):
    return torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_refinement_reads_the_coarse_logits_at_its_voxels_exactly(dtype):
    """At inference the re-predicted voxels' coarse logits and full-resolution stage features reach the head as they
    are, read by flat index (an interpolated bf16 read was up to half a voxel off)."""
    torch.manual_seed(0)
    net = build(SmallMORSE, 2, False).eval()
    captured = {}
    net.rendering.seg_layers["point_head"].register_forward_pre_hook(lambda m, args: captured.update(coarse=args[1]))
    net.rendering.seg_layers["point_features"].register_forward_pre_hook(
        lambda m, args: captured.update(stages=args[0]))
    x = torch.randn(1, 1, 192, 160)
    with torch.no_grad(), autocast_or_not(dtype):
        stage_features, seg_outputs = net.decode(net.encoder(x))
        net(x)
    flat = select_uncertain_voxels(seg_outputs[0], SMALL.num_test_points)
    for values, read in ((seg_outputs[0], captured["coarse"]), (stage_features[0], captured["stages"][0])):
        assert values.shape[2:] == x.shape[2:]
        assert torch.equal(read, values.flatten(2).gather(2, flat[:, None].expand(-1, values.shape[1], -1)).mT)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_training_reads_points_at_float32_positions_under_autocast(dtype):
    """Under autocast the stage features and coarse logits reach the point modules interpolated at the training
    points' float32 positions: they equal a float64 grid_sample of the same maps up to the rounding to dtype."""
    torch.manual_seed(0)
    net = build(SmallMORSE, 2, True).train()
    stage_outputs, captured = [], {}
    for stage in net.decoder.stages:
        stage.register_forward_hook(lambda module, args, out: stage_outputs.append(out))
    net.rendering.seg_layers["point_features"].register_forward_pre_hook(
        lambda m, args: captured.update(stages=args[0]))
    net.rendering.seg_layers["point_head"].register_forward_pre_hook(lambda m, args: captured.update(coarse=args[1]))
    with autocast_or_not(dtype):
        out = net(torch.randn(2, 1, 192, 160), torch.tensor(0.05))
    grid = (out.point_coords.double().flip(-1) * 2 - 1)[:, :, None]
    maps = [*stage_outputs[::-1][:net.num_experts], out.seg[0]]
    for values, read in zip(maps, [*captured["stages"], captured["coarse"]]):
        assert read.dtype == dtype
        expected = torch.nn.functional.grid_sample(values.double(), grid, padding_mode="border",
                                                   align_corners=False)[..., 0].mT
        torch.testing.assert_close(read.double(), expected, rtol=2 ** -8, atol=1e-5 * values.abs().max().item())


def small_variant(trainer_class: type) -> type:
    """trainer_class with its configuration at the small test widths."""
    widths = {f.name: getattr(SMALL, f.name) for f in dataclasses.fields(SMALL)
              if f.name in ("feature_channels", "expert_hidden", "gate_hidden", "fusion_hidden", "head_hidden",
                            "num_frequencies", "num_points", "num_test_points")}
    return type(trainer_class.__name__, (trainer_class,),
                {"morse_config": dataclasses.replace(trainer_class.morse_config, **widths)})


FAMILY = [*short.FAMILY, family.nnUNetTrainerMORSE_denseGate]  # the paper's six and its dense gate


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("trainer_class", FAMILY, ids=lambda c: c.__name__)
def test_family_trains_and_refines_finitely_under_autocast(trainer_class, dtype):
    """The CPU counterpart of tests/test_cuda.py: each family network in fp16 and bf16 autocast."""
    torch.manual_seed(0)
    net = build(small_variant(trainer_class), 2, True).train()
    x = torch.randn(2, 1, 32, 32) * 10
    with torch.autocast("cpu", dtype=dtype):
        out = net(x, torch.tensor(0.05))
        loss = rendering_loss(out.point_logits, out.point_coords, torch.zeros(2, 1, 32, 32))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    net.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        refined = net(x)[0]
    assert refined.shape == (2, 3, 32, 32) and torch.isfinite(refined.float()).all()


@pytest.mark.parametrize("trainer_class", FAMILY, ids=lambda c: c.__name__)
def test_compiled_network_trains_and_matches_eager_at_inference(trainer_class):
    """torch.compile (inductor, as nnU-Net compiles on CUDA) of each family network: training forward and backward
    run, and the compiled inference output equals the eager one."""
    torch._dynamo.reset()  # a fresh compile cache per network: dynamo's recompile limit would fall back to eager
    torch.manual_seed(0)
    net = build(small_variant(trainer_class), 2, deep_supervision=False)
    compiled = torch.compile(net)
    x, target = torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 1, 32, 32)).float()
    out = compiled(x, torch.tensor(0.05))
    loss = out.seg.float().mean() + rendering_loss(out.point_logits, out.point_coords, target)
    loss.backward()
    head = net.rendering.seg_layers["point_head"]
    assert torch.isfinite(loss) and all(p.grad is not None for p in head.parameters())
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), rtol=1e-4, atol=1e-4)


def test_all_experts_dropped_keeps_one_and_stays_finite():
    torch.manual_seed(0)
    kept = draw_kept_experts(10_000, 3, 0.999, torch.device("cpu"))
    assert (kept.sum(1) == 1).all()
    counts = kept.sum(0).float() / 10_000
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.03)  # the rescued expert is uniform
    moe = PointMixtureOfExperts((4, 4, 4), 8, (8,), (8,), (8,), drop_prob=0.999).train()
    out = moe([torch.randn(5, 6, 4) for _ in range(3)])
    assert torch.isfinite(out).all()


def test_all_background_batch_gives_a_finite_loss():
    torch.manual_seed(0)
    net = build(SmallMORSE, 3, True).train()
    out = net(torch.randn(1, 1, 32, 32, 32))
    loss = rendering_loss(out.point_logits, out.point_coords, torch.zeros(1, 1, 32, 32, 32))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
