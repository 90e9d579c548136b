"""recipes/lingen-tiny/probe_skips.py against clips whose skips are known: the world's render of a
mover, cut at a random frame and spliced onto a render of the same object further along (or back)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lingen_model.shapes import render, world

spec = importlib.util.spec_from_file_location(
    "probe_skips", Path(__file__).resolve().parents[1] / "recipes" / "lingen-tiny" / "probe_skips.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

PROMPT = "a green triangle moving right on a black background"


def _clip(cut: int, offset: float, frames: int = 65) -> np.ndarray:
    def scene(x0):
        obj = world.ObjectSpec(shape="triangle", color="green", motion="right", size=0.2, x0=x0, y0=0.5, speed=0.2)
        return render.render(world.SceneSpec(objects=[obj], background="black"), frames, 128, 128, 8.0)
    a, b = scene(0.3), scene(0.3 + offset)
    return np.concatenate([a[:cut], b[cut:]])


def test_the_world_itself_has_no_skip():
    med, found = probe.skips(_clip(10, 0.0), PROMPT, 8.0)
    assert found == [] and med == pytest.approx(0.2 / 8, rel=0.1)  # 0.2 frame widths per second at 8 fps


@pytest.mark.parametrize("offset", [0.15, -0.35])  # a judged jump: more than 0.175 over a 4-frame lag
def test_a_spliced_skip_is_found_where_it_is(offset):
    cut = int(np.random.default_rng().integers(12, 50))
    med, found = probe.skips(_clip(cut, offset), PROMPT, 8.0)
    assert len(found) == 1
    (s,) = found
    assert s["frame"] == cut - 1 and s["forward"] == (offset > 0)
    assert s["step"] == pytest.approx(abs(0.2 / 8 + offset), abs=0.02) and s["ratio"] > 3
    assert s["latent"] == (cut + 3) // 4 and 4 * (s["latent"] - 1) + s["position"] == cut
