"""Mixture pairs: fixed test mixtures, training protocols and the classes a pair carries."""

import pytest
import torch

import latentlab
from latentlab.data.mixtures import (
    MixturePairs,
    distinct_pairs,
    fixed_test_mixtures,
    random_partners,
    training_mixtures,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def unordered(pairs: torch.Tensor) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in pairs.tolist()}


def test_test_mixtures_are_identical_across_runs_and_never_pair_an_image_with_itself():
    images = torch.randint(0, 256, (400, 1, 2, 2), dtype=torch.uint8)
    first, second = fixed_test_mixtures(images), fixed_test_mixtures(images)
    assert len(first) == 10_000
    assert torch.equal(first.pairs, second.pairs)
    assert bool((first.pairs[:, 0] != first.pairs[:, 1]).all())
    assert len(unordered(first.pairs)) == 10_000  # no pair repeated
    assert not torch.equal(distinct_pairs(400, 100, seed=1), distinct_pairs(400, 100, seed=2))


def test_small_splits_get_every_distinct_pair_once():
    pairs = distinct_pairs(5, 10_000, seed=0)
    assert len(pairs) == 10
    assert unordered(pairs) == {(a, b) for a in range(5) for b in range(a + 1, 5)}


def test_mixtures_are_exact_averages_built_from_shared_images():
    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    pairs = MixturePairs(images, torch.tensor([[0, 1], [5, 2]]))
    assert pairs.images.data_ptr() == images.data_ptr()  # no copies
    expected = (images[[0, 5]].double() + images[[1, 2]].double()) / 510
    assert torch.allclose(pairs.mixtures(torch.arange(2)).double(), expected, atol=1e-7)
    assert torch.equal(pairs.sources(slice(1, 2))[0], images[[5, 2]])
    view = pairs.mixture_view()
    assert len(view) == 2 and torch.equal(view[slice(0, 2)], pairs.mixtures(slice(0, 2)))


def test_moved_mixtures_gather_batches_on_their_device_without_a_host_round_trip():
    # "meta" tensors have no data: a copy of the order or the pair table to the host and
    # back (a GPU stall every training step) would raise here
    pairs = MixturePairs(torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)).to("meta")
    pairs.resample(1)
    assert pairs.images.is_meta and pairs.pairs.is_meta
    order = torch.arange(10, device="meta")
    assert pairs.mixtures(order[:4]).is_meta and pairs.mixtures(order[:4]).shape == (4, 3, 4, 4)
    assert pairs.sources(slice(0, 2)).shape == (2, 2, 3, 4, 4)


def test_protocols():
    images = torch.randint(0, 256, (1_200, 1, 2, 2), dtype=torch.uint8)
    assignment = training_mixtures(images, "assignment", seed=0)
    assert len(assignment.images) == 1_000 and len(assignment) == 45_000
    assert len(unordered(assignment.pairs)) == 45_000
    assert bool((assignment.pairs[:, 0] != assignment.pairs[:, 1]).all())
    full = training_mixtures(images, "full", seed=0)
    assert full.images.data_ptr() == images.data_ptr() and len(full) == 1_200
    full.resample(1)
    epoch_1 = full.pairs.clone()
    full.resample(2)
    assert not torch.equal(epoch_1, full.pairs)  # fresh pairs every epoch
    full.resample(1)
    assert torch.equal(epoch_1, full.pairs)  # ... reproducibly, for exact resumption
    assert sorted(full.pairs[:, 0].tolist()) == list(range(1_200))
    assert bool((full.pairs[:, 0] != full.pairs[:, 1]).all())
    assert bool((random_partners(2, 0)[:, 0] != random_partners(2, 0)[:, 1]).all())


def test_mixtures_carry_the_classes_of_both_images_under_either_protocol():
    # each image holds its own label as its one pixel value, so a pair shows its classes
    labels = torch.arange(1_200) % 10
    images = labels.to(torch.uint8).view(-1, 1, 1, 1)
    for protocol in ("assignment", "full"):
        train = training_mixtures(images, protocol, seed=0, labels=labels)
        index = torch.arange(0, len(train), 7)
        sources = train.sources(index).view(len(index), 2).long()
        assert torch.equal(train.classes(index), sources), protocol
    with pytest.raises(ValueError, match="without the images' labels"):
        training_mixtures(images, "full", seed=0).classes(slice(0, 2))


def test_one_image_cannot_make_a_mixture():
    with pytest.raises(latentlab.UserError, match="at least 2 images"):
        distinct_pairs(1, 10, seed=0)
