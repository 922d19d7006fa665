import pytest
import torch

from nnunetv2_morse.head import point_labels
from nnunetv2_morse.points import (PointSampler, linear_corners, nearest_voxels, sample_at_points,
                                   sample_training_points, select_uncertain_voxels, uncertainty, voxel_centres,
                                   write_point_logits)


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



HALF_AND_FULL = [torch.float32, torch.float16, torch.bfloat16]


def neighbour_distinct_pattern(shape):
    """(1, 1, *shape) integers (exact in fp16 and bf16) that differ between a voxel and each of its 3^D - 1
    neighbours: sum of 3^a i_a over the axes a, mod 3^D (no step in {-1, 0, 1}^D sums to 0 mod 3^D)."""
    grids = torch.meshgrid(*[torch.arange(s) for s in shape], indexing="ij")
    return (sum(3 ** a * g for a, g in enumerate(grids)) % 3 ** len(shape)).float()[None, None]


def diagonal_voxels(shape):
    """Flat indices (1, 2n) of two diagonals through a grid of shape (n its longest side): every index of each axis."""
    n = max(shape)
    t = torch.arange(n)
    main = [t % s for s in shape]
    anti = main[:-1] + [(n - 1 - t) % shape[-1]]
    strides = [int(torch.Size(shape[a + 1:]).numel()) for a in range(len(shape))]
    return torch.cat([sum(i * st for i, st in zip(index, strides)) for index in (main, anti)])[None]


def assert_centres_read_their_voxel(values, dtype):
    """values: a neighbour_distinct_pattern."""
    shape = tuple(values.shape[2:])
    flat = diagonal_voxels(shape)
    coords = voxel_centres(flat, shape)
    # positions: a centre (i + 0.5) / side is itself rounded to float32, at most 2^-16 voxel off below side 512
    index, weight = linear_corners(coords, shape)
    assert weight.dtype == torch.float32
    assert torch.equal(index.gather(2, weight.argmax(2, keepdim=True))[..., 0], flat), shape
    assert (1 - weight.amax(2)).max() <= len(shape) * 2 ** -16, shape
    assert torch.equal(nearest_voxels(coords, shape), flat), shape
    # values: that voxel's, up to those neighbour weights (and the rounding to dtype)
    expected = values.flatten(2).gather(2, flat[:, None])
    sampled = sample_at_points(values.to(dtype), coords)
    assert sampled.dtype == dtype
    tolerance = 2 * len(shape) * 2 ** -16 * 3 ** len(shape)
    torch.testing.assert_close(sampled.float(), expected, rtol=0, atol=tolerance, msg=f"{shape} {dtype}")
    assert torch.equal(sample_at_points(values.to(dtype), coords, mode="nearest").float(), expected), shape


@pytest.mark.parametrize("dtype", HALF_AND_FULL, ids=str)
def test_voxel_centres_read_their_voxel_at_every_side_up_to_512(dtype):
    """Positions are float32 whatever the values' dtype (a bf16 position was up to half a voxel off at a 512 side, an
    fp16 one an eighth): at each voxel centre the interpolation reads that voxel, and so does the nearest lookup."""
    for side in range(8, 513):  # each axis at this side, against a short one; both of PointSampler's read paths
        assert_centres_read_their_voxel(neighbour_distinct_pattern((side, 3)), dtype)  # rows of a channels-last copy
        assert_centres_read_their_voxel(neighbour_distinct_pattern((40, side)), dtype)  # gathered in place
    for shape in [(8, 8, 8), (160, 5, 37), (3, 192, 128), (512, 4, 9)]:
        assert_centres_read_their_voxel(neighbour_distinct_pattern(shape), dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(512, 384), (160, 192, 128)])
def test_half_precision_values_are_read_at_float32_positions_under_autocast(shape, dtype):
    """Under autocast, half-precision maps are interpolated with the float32 positions and weights: the result is the
    float32 interpolation of the same (half-precision) values, rounded once."""
    torch.manual_seed(0)
    values = torch.randn(2, 3, *shape).to(dtype)
    coords = torch.rand(2, 500, len(shape))
    reference = sample_at_points(values.float(), coords).to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        assert torch.equal(sample_at_points(values, coords), reference)
        index, weight = linear_corners(coords, shape)
    assert weight.dtype == torch.float32 and torch.equal((index, weight)[1], linear_corners(coords, shape)[1])


def dominant_voxels(coords, shape):
    """Flat index (B, P) of the interpolation corner of largest weight; a point on a voxel face (a tie) counts for
    the upper voxel, as the voxel [i / s, (i + 1) / s) contains it."""
    index, weight = linear_corners(coords, shape)
    return index.flip(2).gather(2, weight.flip(2).argmax(2, keepdim=True))[..., 0]


@pytest.mark.parametrize("shape", [*[(side, 3) for side in (8, 100, 160, 192, 250, 384, 512)], (33, 20, 9),
                                   (160, 37, 5), (5, 192, 128)])
def test_labels_are_read_at_the_voxel_that_dominates_the_features(shape):
    """Nearest lookup (L_rend's labels, the selectable mask) and interpolation agree on the voxel: at random points,
    at voxel centres, on voxel faces and beyond the outermost centres (border clamp)."""
    torch.manual_seed(0)
    dims = len(shape)
    sizes = torch.tensor(shape)
    faces = torch.randint(1, min(shape), (2, 50, dims)) / sizes
    coords = torch.cat((torch.rand(2, 2000, dims), voxel_centres(torch.randint(0, sizes.prod(), (2, 50)), shape),
                        faces, torch.rand(2, 50, dims) * 0.02, 1 - torch.rand(2, 50, dims) * 0.02), dim=1)
    dominant = dominant_voxels(coords, shape)
    assert torch.equal(nearest_voxels(coords, shape), dominant)
    target = torch.randint(0, 4, (2, 1, *shape)).float()
    assert torch.equal(point_labels(target, coords), target.flatten(1).long().gather(1, dominant))
    torch.testing.assert_close(linear_corners(coords, shape)[1].sum(2), torch.ones(2, coords.shape[1]))


def test_uncertain_training_points_lie_in_selectable_voxels_at_a_512_side():
    torch.manual_seed(0)
    logits = torch.zeros(2, 3, 512, 512)  # everything equally uncertain
    selectable = torch.zeros(2, 1, 512, 512, dtype=torch.bool)
    selectable[:, :, ::2] = True  # every other row: a point off by one voxel lands in an unselectable one
    coords = sample_training_points(logits, 2000, 3.0, 0.75, selectable=selectable)
    assert torch.equal(point_labels(selectable.float(), coords[:, :1500]), torch.ones(2, 1500, dtype=torch.long))
    assert (point_labels(selectable.float(), coords[:, 1500:]) == 0).any()


@pytest.mark.parametrize("num_points", [10, 400], ids=["gathered_in_place", "channels_last_rows"])
@pytest.mark.parametrize("dims", [2, 3])
def test_linear_sampling_matches_grid_sample_with_border_padding(dims, num_points):
    """Values and gradients of both read paths (few points: gathered in place; more corners than voxels: rows of a
    channels-last copy) against grid_sample, also beyond the outermost centres."""
    torch.manual_seed(0)
    values = torch.randn(2, 4, *[9, 6, 5][:dims], dtype=torch.float64, requires_grad=True)
    edges = torch.rand(2, num_points // 10, dims) * 0.05
    coords = torch.cat((torch.rand(2, num_points - 2 * edges.shape[1], dims), edges, 1 - edges), 1)
    grid = (coords.flip(-1) * 2 - 1).double().reshape(2, num_points, *([1] * (dims - 1)), dims)
    expected = torch.nn.functional.grid_sample(values, grid, mode="bilinear", padding_mode="border",
                                               align_corners=False).reshape(2, 4, num_points)
    sampled = sample_at_points(values, coords)
    torch.testing.assert_close(sampled, expected, rtol=1e-5, atol=1e-5)  # float32 positions and weights
    weights = torch.randn(2, 4, num_points, dtype=torch.float64)
    grad, = torch.autograd.grad((sampled * weights).sum(), values)
    expected_grad, = torch.autograd.grad((expected * weights).sum(), values)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", HALF_AND_FULL, ids=str)
@pytest.mark.parametrize("shape", [(24, 20), (12, 10, 8)])
def test_both_read_paths_agree(shape, dtype):
    """The same points read from a copy's rows (many points) and in place (a few of them) give the same values."""
    torch.manual_seed(0)
    values = torch.randn(2, 5, *shape).to(dtype)
    many = torch.rand(2, 1000, len(shape))
    few = many[:, :10]
    assert 10 * 2 ** len(shape) < values[0, 0].numel() <= 1000 * 2 ** len(shape)
    torch.testing.assert_close(sample_at_points(values, many)[..., :10], sample_at_points(values, few))


def test_sampler_reads_the_voxels_it_was_given_exactly():
    torch.manual_seed(0)
    values = torch.randn(2, 3, 37, 23).to(torch.bfloat16)
    flat = torch.randperm(37 * 23)[:50].repeat(2, 1)
    sampler = PointSampler(voxel_centres(flat, (37, 23)), flat, (37, 23))
    assert torch.equal(sampler(values), values.flatten(2).gather(2, flat[:, None].expand(-1, 3, -1)))
    coarser = torch.randn(2, 3, 19, 12)  # other resolutions are interpolated
    torch.testing.assert_close(sampler(coarser), sample_at_points(coarser, voxel_centres(flat, (37, 23))))
