"""The core's pixel window and its retry over seeded windows, shared by the remote-sensing and microscopy
readers."""

import pytest

from mae_domains.data.sample import BadSampleError
from mae_domains.data.windows import PixelWindow, read_first_valid


def test_window_clipped_to_a_field_with_padding():
    rows, cols, pad = PixelWindow(-2, 5, 8, 8).clipped(20, 10)
    assert (rows, cols, pad) == (slice(0, 6), slice(5, 10), (2, 0, 0, 3))
    with pytest.raises(ValueError, match=r"window \(30, 0, 4, 4\) lies outside a 20x10 field"):
        PixelWindow(30, 0, 4, 4).clipped(20, 10)


def test_retries_until_a_window_is_valid_enough():
    fractions = [0.0, 0.2, 0.6, 1.0]
    tried = []

    def attempt(k):
        tried.append(k)
        return f"window {k}", fractions[k]

    assert read_first_valid(attempt, 4, 0.5, "scene.tif") == ("window 2", 0.6)
    assert tried == [0, 1, 2]


def test_names_the_source_when_no_window_is_valid():
    with pytest.raises(BadSampleError, match=r"scene.tif: chip is only 20% valid pixels \(min_valid_fraction=0.5; "
                                             r"3 window\(s\) tried\)"):
        read_first_valid(lambda k: (k, 0.2), 3, 0.5, "scene.tif")
    with pytest.raises(BadSampleError, match="chip is all nodata"):
        read_first_valid(lambda k: (k, 0.0), 1, 0.0, "scene.tif")
