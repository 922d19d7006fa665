import pytest
import torch

from nnunetv2_morse.points import (sample_at_points, sample_training_points, select_uncertain_voxels, uncertainty,
                                   voxel_centres, write_point_logits)


@pytest.mark.parametrize("shape", [(5, 7), (4, 5, 6)])
def test_sample_at_voxel_centres_is_exact(shape):
    values = torch.randn(2, 3, *shape)
    flat = torch.randperm(values[0, 0].numel())[:10].repeat(2, 1)
    coords = voxel_centres(flat, shape)
    sampled = sample_at_points(values, coords)
    expected = values.flatten(2).gather(2, flat[:, None].expand(-1, 3, -1))
    torch.testing.assert_close(sampled, expected)
    torch.testing.assert_close(sample_at_points(values, coords, mode="nearest"), expected)


@pytest.mark.parametrize("dims", [2, 3])
def test_sample_is_linear_between_centres(dims):
    shape = (4,) * dims
    ramp = torch.arange(4.0).view(4, *([1] * (dims - 1))).expand(*shape)  # varies along the first spatial axis
    values = ramp[None, None]
    coords = torch.full((1, 1, dims), 0.5)
    coords[0, 0, 0] = (1.5 + 0.25) / 4  # a quarter of the way from voxel 1's centre to voxel 2's
    assert sample_at_points(values, coords).item() == pytest.approx(1.25)
    assert sample_at_points(values, coords, mode="nearest").item() == 1.0


def test_uncertainty_is_second_minus_largest():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]]).t()[None]  # (1, K=3, P=2)
    torch.testing.assert_close(uncertainty(logits), torch.tensor([[-1.0, -5.0]]))


@pytest.mark.parametrize("shape", [(6, 9), (3, 4, 5)])
def test_flat_index_round_trip(shape):
    flat = torch.arange(torch.Size(shape).numel())[None]
    coords = voxel_centres(flat, shape)
    index = (coords * torch.tensor(shape) - 0.5).round().long()
    strides = torch.tensor([int(torch.Size(shape[i + 1:]).numel()) for i in range(len(shape))])
    assert torch.equal((index * strides).sum(-1), flat)
    # the last axis varies fastest, so in 3D consecutive indices stay in one slice
    assert coords[0, 1, 0] == coords[0, 0, 0]


def test_select_uncertain_voxels_finds_the_ambiguous_ones():
    logits = torch.zeros(2, 3, 4, 5, 6)
    logits[:, 0] = 10.0
    targets = [(1, 2, 3), (0, 0, 0), (3, 4, 5)]
    for z, y, x in targets:
        logits[:, 1, z, y, x] = 10.0
    flat = select_uncertain_voxels(logits, 3)
    coords = voxel_centres(flat, (4, 5, 6))
    found = {tuple(i) for i in (coords[0] * torch.tensor([4, 5, 6]) - 0.5).round().long().tolist()}
    assert found == set(targets)
    assert select_uncertain_voxels(logits, 10_000).shape == (2, 120)


def test_write_point_logits_changes_only_chosen_voxels():
    logits = torch.randn(2, 3, 4, 5, 6)
    flat = torch.tensor([[0, 7, 119], [5, 6, 7]])
    new = torch.full((2, 3, 3), 100.0)
    out = write_point_logits(logits, flat, new)
    changed = (out != logits).any(1).flatten(1)
    expected = torch.zeros_like(changed)
    expected.scatter_(1, flat, True)
    assert torch.equal(changed, expected)
    assert (out.flatten(2).gather(2, flat[:, None].expand(-1, 3, -1)) == 100).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_training_points_take_the_most_uncertain_candidates(dims):
    torch.manual_seed(0)
    size = 32
    # uncertainty grows towards the centre plane of the first axis: |logit gap| = |x - 0.5|
    axis = (torch.arange(size) + 0.5) / size
    gap = (axis - 0.5).abs().view(size, *([1] * (dims - 1))).expand(*([size] * dims))
    logits = torch.stack((gap, torch.zeros_like(gap)))[None].repeat(2, 1, *([1] * dims))
    num_points, k, rho = 1000, 3.0, 0.75
    coords = sample_training_points(logits, num_points, k, rho)
    assert coords.shape == (2, num_points, dims)
    assert coords.min() >= 0 and coords.max() <= 1
    scores = uncertainty(sample_at_points(logits, coords))
    num_uncertain = int(rho * num_points)
    # the first rho*N_p points are the top quarter of 3*N_p uniform candidates: |x - 0.5| below ~1/8
    dist = (coords[:, :num_uncertain, 0] - 0.5).abs()
    assert dist.max() < 0.5 / k + 0.03
    assert (scores[:, :num_uncertain].mean() > scores[:, num_uncertain:].mean()).all()
    # the remaining points are uniform: their mean distance to the centre plane is ~0.25
    rest = (coords[:, num_uncertain:, 0] - 0.5).abs().mean()
    assert abs(rest.item() - 0.25) < 0.03


def test_region_uncertainty_is_the_least_confident_region():
    logits = torch.tensor([[4.0, -0.5], [-3.0, 2.0], [0.1, 9.0]]).t()[None]  # (1, R=2, P=3)
    torch.testing.assert_close(uncertainty(logits, regions=True), torch.tensor([[-0.5, -2.0, -0.1]]))
    single_region = torch.tensor([[[1.0, -0.2, 3.0]]])
    assert select_uncertain_voxels(single_region.view(1, 1, 3, 1), 1, regions=True).item() == 1


def test_training_points_avoid_unselectable_voxels():
    torch.manual_seed(0)
    logits = torch.zeros(2, 3, 16, 16)  # everything equally uncertain
    selectable = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    selectable[..., 8:] = True  # only the right half is labelled
    coords = sample_training_points(logits, 200, 3.0, 0.75, selectable=selectable)
    assert (coords[:, :150, 1] >= 0.5).all()
    assert (coords[:, 150:, 1] < 0.5).any()  # the uniform share still covers the whole patch
