"""recipes/lingen-tiny/probe_fade.py (session 35 probe, issue 14): its per-frame contrast must read an object that is
there, read nothing in an empty frame, and refuse a clip of the wrong shape."""
import numpy as np
import pytest

from support.recipes import load_recipe


def test_object_contrast_sees_the_object_and_not_an_empty_frame():
    probe = load_recipe("probe_fade")
    clip = np.full((3, 32, 32, 3), 40, dtype=np.uint8)
    clip[0, 10:18, 10:18] = (240, 40, 40)  # a red square on dark gray in frame 0, a faint one in frame 1
    clip[1, 10:18, 10:18] = (60, 40, 40)
    c = probe.object_contrast(clip)
    assert c.shape == (3,) and c[0] == pytest.approx(200) and c[1] == pytest.approx(20) and c[2] == 0
    with pytest.raises(ValueError, match="T×H×W×3"):
        probe.object_contrast(clip[0])
