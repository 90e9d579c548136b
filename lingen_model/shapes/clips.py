"""Clips of the shapes world: a captioned clip from a seed (:func:`make_clip`, the training data), and
a scene for a prompt (:func:`scene_from_prompt`, ground truth for ``lingen eval --ground-truth``)."""
from __future__ import annotations


import numpy as np

from lingen_model.shapes.language import caption, parse_prompt
from lingen_model.shapes.render import background_image, check_clip_size, render
from lingen_model.shapes.world import BACKGROUNDS, BASIC_MOTIONS, COLORS, SHAPES, SceneSpec, layout_objects, sample_scene

# --------------------------------------------------------------------------- clips


def make_clip(seed: int, num_frames: int, height: int, width: int, fps: float, still_prob: float = 0.0,
              max_objects: int = 2, motions=None, entry_prob: float = 0.0) -> tuple[np.ndarray, str, SceneSpec]:
    """One captioned training clip, deterministic per ``seed``.

    Args:
        seed: any int ≥ 0; same seed and arguments → same frames and caption.
        num_frames, height, width, fps: as in :func:`render`.
        still_prob: probability that every object of the clip stands still (e.g. for
            image-like warm-up data), on top of ``still`` in ``motions``.
        max_objects, motions, entry_prob: as in :func:`sample_scene`.

    Returns:
        ``(frames uint8 T×H×W×3, caption str, scene SceneSpec)``.

    Raises:
        ValueError: bad seed, sizes, fps or probabilities.
    """
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if not 0.0 <= still_prob <= 1.0:
        raise ValueError(f"still_prob must be in [0, 1], got {still_prob}")
    check_clip_size(num_frames, height, width, fps)
    rng = np.random.default_rng(int(seed))
    force_still = rng.random() < still_prob
    scene = sample_scene(rng, max_objects=max_objects, motions=("still",) if force_still else motions,
                         entry_prob=entry_prob)
    text = caption(scene, rng)
    return render(scene, num_frames, height, width, fps), text, scene


def object_mask(frames: np.ndarray, scene: SceneSpec, tol: int = 8) -> np.ndarray:
    """Where the objects are in a render of ``scene``: pixels that differ from the scene's
    background (:func:`render.background_image`) by more than ``tol`` (uint8 levels) in some channel.

    Args:
        frames: uint8 T×H×W×3, as :func:`render` returns for ``scene``.
        scene: the scene the frames show. tol: 0–254.

    Returns:
        bool T×H×W. Anti-aliased edge pixels count once their coverage moves a channel by more
        than ``tol``; an object of the background's own colour would not show (the world's
        captions never pair a colour with its own background).

    Raises:
        ValueError: frames not uint8 T×H×W×3, or ``tol`` outside [0, 254].
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError("frames must be a uint8 array T×H×W×3")
    if not 0 <= tol <= 254:
        raise ValueError(f"tol must be in [0, 254], got {tol}")
    bg = np.rint(background_image(scene, frames.shape[1], frames.shape[2])).astype(np.int16)
    return (np.abs(frames.astype(np.int16) - bg[None]) > tol).any(axis=3)


def scene_from_prompt(text: str, rng: np.random.Generator) -> SceneSpec:
    """A ground-truth scene for a prompt: named attributes kept, the rest drawn from ``rng``.

    Useful as a reference render for a prompt (e.g. to check the judge). Two objects
    with a horizontal and a vertical mover may cross (see :func:`layout_objects`).

    Raises:
        ValueError: the prompt is not parseable, or names more than two objects.
    """
    target = parse_prompt(text)
    if len(target.objects) > 2:
        raise ValueError(f"scenes hold one or two objects; the prompt names {len(target.objects)}")
    used = {o.color for o in target.objects if o.color}
    attrs = []
    for o in target.objects:
        color = o.color
        if color is None:
            free = [c for c in COLORS if c not in used]
            color = free[int(rng.integers(len(free)))]
            used.add(color)
        shape = o.shape or SHAPES[int(rng.integers(len(SHAPES)))]
        motion = o.motion or BASIC_MOTIONS[int(rng.integers(len(BASIC_MOTIONS)))]
        attrs.append((shape, color, motion))
    background = target.background or list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    texture = bool(target.texture) if target.texture is not None else False
    return SceneSpec(objects=layout_objects(rng, attrs), background=background, texture=texture,
                     texture_seed=int(rng.integers(2**31 - 1)))


