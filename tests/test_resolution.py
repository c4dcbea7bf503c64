"""Unit tests of the stage-1 size rules (no ComfyUI needed)."""

import pytest

from hunyuan_core import resolution

pytestmark = pytest.mark.unit


def test_official_sizes_are_the_readme_list():
    sizes = {(p.width, p.height) for p in resolution.OFFICIAL_SIZES}
    assert sizes == {(2048, 2048), (2560, 1536), (1536, 2560), (2304, 1792), (1792, 2304)}


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [(2048, 2048, 4096), (2560, 1536, 3840), (2304, 1792, 4032)],
)
def test_latent_geometry_matches_model_spec(width, height, tokens):
    assert resolution.latent_shape(width, height, 3) == (3, 64, height // 32, width // 32)
    assert resolution.latent_tokens(width, height) == tokens


@pytest.mark.parametrize(
    ("width", "height", "fragment"),
    [
        (2050, 2048, "width 2050 is not a multiple of 32"),
        (2048, 1000, "height 1000 is not a multiple of 32"),
        (0, 2048, "width 0 is too small"),
        (2048, 16416, "height 16416 is too large"),
    ],
)
def test_bad_sizes_are_named(width, height, fragment):
    assert fragment in resolution.size_problem(width, height)
    with pytest.raises(ValueError, match=fragment):
        resolution.latent_shape(width, height)


def test_bad_side_suggests_neighbours():
    assert resolution.size_problem(2048, 1000).endswith("use 992 or 1024")
    assert resolution.size_problem(2048, 2048) is None


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch size 0"):
        resolution.latent_shape(2048, 2048, 0)


def test_trained_range():
    assert not any(resolution.below_trained_range(p.width, p.height) for p in resolution.OFFICIAL_SIZES)
    assert resolution.below_trained_range(1024, 1024)
    assert resolution.below_trained_range(2048, 1536)
    assert not resolution.below_trained_range(2560, 2560)


def test_preset_labels_round_trip():
    for preset in resolution.OFFICIAL_SIZES:
        assert resolution.preset_by_label(preset.label) is preset
    with pytest.raises(ValueError, match="unknown size preset"):
        resolution.preset_by_label("1024x1024")
