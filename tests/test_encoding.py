import math

import pytest
import torch

from nnunetv2_morse.encoding import FourierPositionalEncoding


@pytest.mark.parametrize("dims", [2, 3])
def test_matches_formula(dims):
    enc = FourierPositionalEncoding(dims, num_frequencies=8, std=2.0)
    coords = torch.rand(2, 5, dims)
    out = enc(coords)
    assert out.shape == (2, 5, 16) and out.dtype == torch.float32
    p = 2 * coords - 1
    b = enc.frequencies.detach()
    for i in range(8):
        phase = 2 * math.pi * (p * b[i]).sum(-1)
        torch.testing.assert_close(out[..., i], torch.sin(phase))
        torch.testing.assert_close(out[..., 8 + i], torch.cos(phase))


def test_frequencies_are_trainable_gaussian():
    torch.manual_seed(0)
    enc = FourierPositionalEncoding(2, num_frequencies=4096, std=3.0)
    assert enc.frequencies.requires_grad
    assert abs(enc.frequencies.std().item() - 3.0) < 0.1
    assert abs(enc.frequencies.mean().item()) < 0.1
    enc(torch.rand(1, 3, 2)).sum().backward()
    assert enc.frequencies.grad is not None and enc.frequencies.grad.abs().sum() > 0


def test_float32_under_autocast_with_large_frequencies():
    enc = FourierPositionalEncoding(3, num_frequencies=16, std=1000.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(torch.rand(1, 100, 3).to(torch.bfloat16))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out[..., :16] ** 2 + out[..., 16:] ** 2, torch.ones(1, 100, 16))
