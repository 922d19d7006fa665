"""MorseNetwork against the stock nnU-Net U-Net: same coarse outputs, refined only where the head re-predicts."""
import dataclasses

import pytest
import torch

from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_morse.config import MorseConfig
from nnunetv2_morse.network import MorseTrainingOutput, scale_gradient
from nnunetv2_morse.points import select_uncertain_voxels
from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE
from plans import SMALL, SmallMORSE, build


def stock_and_morse(dim, deep_supervision, network="PlainConvUNet", n_stages=4):
    torch.manual_seed(0)
    stock = build(nnUNetTrainer, dim, deep_supervision, network, n_stages)
    morse = build(SmallMORSE, dim, deep_supervision, network, n_stages)
    missing, unexpected = morse.load_state_dict(stock.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("rendering.seg_layers.") for k in missing)
    return stock, morse


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("network", ["PlainConvUNet", "ResidualEncoderUNet"])
@pytest.mark.parametrize("n_stages", [3, 5])
def test_training_output_matches_the_unet(dim, network, n_stages):
    stock, morse = stock_and_morse(dim, True, network, n_stages)
    x = torch.randn(2, 1, *[2 ** (n_stages + 1)] * dim)
    out = morse.train()(x)
    assert isinstance(out, MorseTrainingOutput)
    expected = stock.train()(x)
    assert len(out.seg) == len(expected) == n_stages - 1
    for a, b in zip(out.seg, expected):
        torch.testing.assert_close(a, b)
    assert out.point_logits.shape == (2, 3, SMALL.num_points)
    assert out.point_coords.shape == (2, SMALL.num_points, dim)
    assert morse.num_experts == min(n_stages - 1, 5 if dim == 2 else 3)


@pytest.mark.parametrize("dim", [2, 3])
def test_inference_changes_only_the_most_uncertain_voxels(dim):
    stock, morse = stock_and_morse(dim, False)
    x = torch.randn(2, 1, *[32] * dim)
    with torch.no_grad():
        coarse = stock.eval()(x)
        refined = morse.eval()(x)
    assert refined.shape == coarse.shape
    changed = (refined != coarse).any(1).flatten(1)
    chosen = torch.zeros_like(changed).scatter_(1, select_uncertain_voxels(coarse, SMALL.num_test_points), True)
    assert (changed & ~chosen).sum() == 0
    assert changed.sum(1).min() > 0.9 * SMALL.num_test_points  # the head really re-predicts them


def test_eval_with_deep_supervision_refines_the_full_resolution_output():
    stock, morse = stock_and_morse(2, True)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        coarse, refined = stock.eval()(x), morse.eval()(x)
    assert not torch.equal(refined[0], coarse[0])
    for a, b in zip(refined[1:], coarse[1:]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dim", [2, 3])
def test_state_dict_round_trip_through_build_network_architecture(dim):
    trained = build(SmallMORSE, dim, True)
    rebuilt = build(SmallMORSE, dim, False)
    result = rebuilt.load_state_dict(trained.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(1, 1, *[32] * dim)
    trained.decoder.deep_supervision = False
    with torch.no_grad():
        torch.testing.assert_close(trained.eval()(x), rebuilt.eval()(x))


def test_stock_checkpoint_loads_as_pretrained_weights(tmp_path):
    torch.manual_seed(1)
    stock = build(nnUNetTrainer, 3, True)
    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": stock.state_dict()}, path)
    morse = build(SmallMORSE, 3, True)
    head_before = {k: v.clone() for k, v in morse.state_dict().items() if k.startswith("rendering.")}
    load_pretrained_weights(morse, str(path))
    state = morse.state_dict()
    for key, value in stock.state_dict().items():
        if ".seg_layers." not in key:
            assert torch.equal(state[key], value), key
    for key, value in head_before.items():
        assert torch.equal(state[key], value)


@pytest.mark.parametrize("gate", ["pointwise", "dense"])
def test_backbone_gradient_scale_reaches_only_the_unet(gate):
    torch.manual_seed(0)
    config = dataclasses.replace(SMALL, gate=gate)
    morse = build(type("ScaledMORSE", (SmallMORSE,), {"morse_config": config}), 2, True)
    x = torch.randn(2, 1, 32, 32)

    def grads(scale):
        morse.zero_grad()
        torch.manual_seed(5)
        out = morse.train()(x, None if scale is None else torch.tensor(scale))
        out.point_logits.square().mean().backward()
        return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in morse.named_parameters()}

    full, half, zero = grads(None), grads(0.5), grads(0.0)
    encoder = [n for n in full if n.startswith("encoder.")]
    head = [n for n in full if n.startswith("rendering.")]
    assert all(zero[n].abs().sum() == 0 for n in encoder)
    assert sum(full[n].abs().sum() for n in encoder) > 0
    for n in encoder:
        torch.testing.assert_close(half[n], 0.5 * full[n])
    for n in head:
        torch.testing.assert_close(zero[n], full[n])
        torch.testing.assert_close(half[n], full[n])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_scale_gradient_is_the_identity_bit_for_bit(dtype):
    torch.manual_seed(0)
    x = (torch.randn(20_000) * 100).to(dtype).requires_grad_()
    upstream = torch.randn(20_000).to(dtype)
    for scale in (0.0, 0.05, 0.3, 1.0):
        out = scale_gradient(x, torch.tensor(scale))
        assert out.dtype == dtype and torch.equal(out, x), scale
        grad, = torch.autograd.grad(out, x, upstream)
        assert torch.equal(grad, upstream * torch.tensor(scale)), scale


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("network", ["PlainConvUNet", "ResidualEncoderUNet"])
@pytest.mark.parametrize("deep_supervision", [True, False], ids=["ds", "no_ds"])
def test_decode_is_the_unet_decoder(dim, network, deep_supervision):
    """MorseNetwork.decode copies UNetDecoder.forward (to return stage features too): its outputs must stay the
    decoder's own, so that an upstream change cannot drift silently."""
    torch.manual_seed(0)
    morse = build(SmallMORSE, dim, deep_supervision, network)
    stage_outputs = []
    hooks = [stage.register_forward_hook(lambda module, args, out: stage_outputs.append(out))
             for stage in morse.decoder.stages]
    with torch.no_grad():
        skips = morse.encoder(torch.randn(2, 1, *[32] * dim))
        expected = morse.decoder(skips)
        for hook in hooks:
            hook.remove()
        stage_features, seg_outputs = morse.decode(skips)
    expected = expected if deep_supervision else [expected]
    assert len(seg_outputs) == len(expected) == (len(morse.decoder.stages) if deep_supervision else 1)
    assert all(torch.equal(a, b) for a, b in zip(seg_outputs, expected))
    highest_first = stage_outputs[::-1][:morse.num_experts]
    assert len(stage_features) == morse.num_experts
    assert all(torch.equal(a, b) for a, b in zip(stage_features, highest_first))


def test_too_many_experts_for_the_plan_is_refused():
    class TooMany(nnUNetTrainerMORSE):
        morse_config = MorseConfig(num_experts=5)

    with pytest.raises(ValueError, match=r"num_experts=5 .*1\.\.3"):
        build(TooMany, 2, True, n_stages=4)


@pytest.mark.parametrize("trainer_name", ["nnUNetTrainerPointRend", "nnUNetTrainerMoE", "nnUNetTrainerSMoE",
                                          "nnUNetTrainerIAR", "nnUNetTrainerIARMoE", "nnUNetTrainerMORSE"])
def test_every_family_network_in_3d(trainer_name):
    """3D smoke run of the family at the paper's widths: train forward and backward, rebuild, refine."""
    from nnunetv2_morse.trainers import family
    trainer = getattr(family, trainer_name, nnUNetTrainerMORSE)
    torch.manual_seed(0)
    trained = build(trainer, 3, True)
    out = trained.train()(torch.randn(1, 1, 16, 16, 16), torch.tensor(0.5))
    out.point_logits.float().mean().backward()
    assert all(p.grad is not None for p in trained.rendering.parameters())
    rebuilt = build(trainer, 3, False)
    rebuilt.load_state_dict(trained.state_dict(), strict=True)
    with torch.no_grad():
        assert rebuilt.eval()(torch.randn(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)
