"""recipes/lingen-tiny/presence_timeline.py: the per-second presence line against the world's own renders,
with frames blanked to the background where the answer is known."""
import importlib.util
from pathlib import Path

import numpy as np

from lingen_model.shapes.clips import make_clip

spec = importlib.util.spec_from_file_location(
    "presence_timeline", Path(__file__).resolve().parents[1] / "recipes" / "lingen-tiny" / "presence_timeline.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def test_blanked_seconds_show_as_gaps_and_the_rest_as_present():
    fps = 8
    frames, caption, _ = make_clip(7, 4 * fps, 64, 64, fps, max_objects=1)
    assert probe.timeline(probe.seconds_present(frames, caption, fps)) == "####"  # a ground-truth render: always there
    gapped = frames.copy()
    background = frames[:, 0, 0].copy()  # a corner pixel of the frame: the background (the object is small)
    corner_is_background = np.all(frames[:, :1, :1] == frames[:1, :1, :1], axis=(1, 2, 3))
    assert corner_is_background.all()
    gapped[fps:2 * fps] = background[fps:2 * fps, None, None]     # second 1: absent
    gapped[3 * fps:3 * fps + fps // 4] = background[0]            # a quarter of second 3: mostly present
    assert probe.timeline(probe.seconds_present(gapped, caption, fps)) == "# #+"


def test_timeline_characters_follow_the_per_second_share():
    assert probe.timeline([1.0, 5 / 8, 1 / 8, 0.0]) == "#+. "
