"""Batch augmentations: shape, range, per-image randomness and exact identities."""

import pytest
import torch

from latentlab.transforms import (
    AUGMENTATIONS,
    color_jitter,
    flip_augment,
    random_crop,
    random_grayscale,
    random_resized_crop,
    random_translate,
    shift_augment,
)


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
@pytest.mark.parametrize("shape", [(16, 3, 32, 32), (16, 1, 28, 28)])
def test_shape_and_range_are_kept(name, shape):
    images = torch.rand(shape).contiguous(memory_format=torch.channels_last)
    images[0] = 0  # extremes stay inside [0, 1] too
    images[1] = 1
    out = AUGMENTATIONS[name](images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", ["light", "shifts", "simclr"])
def test_every_image_gets_its_own_random_parameters(name):
    one = torch.rand(1, 3, 32, 32)
    out = AUGMENTATIONS[name](one.repeat(32, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    different = [not torch.equal(out[0], out[i]) for i in range(1, 32)]
    assert sum(different) >= 24  # a whole-batch draw would make all 32 identical


def test_seeded_generator_reproduces():
    images = torch.rand(8, 3, 32, 32)
    a = AUGMENTATIONS["simclr"](images, generator=torch.Generator().manual_seed(3))
    b = AUGMENTATIONS["simclr"](images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_exact_identities():
    images = torch.rand(4, 3, 8, 8)
    assert torch.equal(random_translate(images, max_shift=0, flip_p=0), images)
    assert torch.equal(random_translate(images, max_shift=0, flip_p=1), images.flip(-1))
    whole = random_resized_crop(images, scale=(1, 1), ratio=(1, 1), flip_p=0)
    assert torch.allclose(whole, images, atol=1e-5)
    assert torch.allclose(color_jitter(images, p=0), images, atol=1e-5)
    grey = random_grayscale(images, p=1)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])


def test_translation_moves_whole_pixels():
    images = torch.rand(64, 1, 8, 8)
    shifted = random_translate(images, max_shift=2, flip_p=0)
    # every output pixel is either an input pixel or zero fill: no blur
    assert all(torch.isin(s[s != 0], i).all() for s, i in zip(shifted, images))


def test_shifts_fill_the_gap_with_the_mirrored_edge_not_black():
    # a left-to-right ramp, so each shift can be read off the output and checked
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8) / 8 + 0.05
    out = random_translate(ramp.repeat(200, 1, 1, 1), max_shift=2, flip_p=0,
                           generator=torch.Generator().manual_seed(0),
                           padding_mode="reflection")
    assert out.min() > 0  # the zero fill of `light` would leave black columns
    seen = set()
    for image in out:  # each row is the ramp shifted by s, its edge columns mirrored
        row = image[0, 0]
        s = int(round(float((ramp[0, 0, 0, 4] - row[4]) * 8)))
        seen.add(s)
        index = torch.arange(8) - s
        index = torch.where(index < 0, -index - 1, index)  # mirrored at the left edge
        index = torch.where(index > 7, 15 - index, index)  # and at the right edge
        assert torch.equal(row, ramp[0, 0, 0, index])
    assert seen == {-2, -1, 0, 1, 2}
    assert torch.isin(shift_augment(ramp), ramp).all()


def test_crop_can_make_smaller_outputs():
    assert random_resized_crop(torch.rand(2, 3, 32, 32), size=(24, 24)).shape == (2, 3, 24, 24)


def test_random_crop_copies_a_window_of_each_image_exactly():
    images = torch.rand(40, 3, 10, 12)
    out = random_crop(images, 6, generator=torch.Generator().manual_seed(0))
    assert out.shape == (40, 3, 6, 6)
    places = set()
    for image, window in zip(images, out):
        found = [(t, left) for t in range(5) for left in range(7)
                 if torch.equal(image[:, t:t + 6, left:left + 6], window)]
        assert found  # an exact window, not a resampled one
        places.update(found)
    assert len(places) > 10  # each image its own place
    square = images[..., :10]
    assert torch.equal(random_crop(square, 10), square)  # a window of the full size: the image


def test_flips_mirror_each_image_exactly_or_leave_it_and_keep_uint8():
    images = torch.randint(0, 256, (200, 3, 6, 5), dtype=torch.uint8)
    out = flip_augment(images, generator=torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8
    kept = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert (kept | mirrored).all()
    assert 70 <= int(mirrored.sum()) <= 130  # about half of 200
