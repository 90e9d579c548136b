"""The procedural shapes world: rendering geometry, determinism, sampling, captions, parsing."""
import math
from dataclasses import replace

import numpy as np
import pytest

from lingen_model.shapes import world as w
from lingen_model.shapes import clips as shapes_clips
from lingen_model.shapes import language as shapes_language
from lingen_model.shapes import prompts as shapes_prompts
from lingen_model.shapes import render as shapes_render


def _alpha(frames, scene):
    """Coverage of the (single) object implied by pixel values over a plain background."""
    bg = np.array(w.BACKGROUNDS[scene.background], dtype=np.float64)
    col = np.array(w.COLORS[scene.objects[0].color], dtype=np.float64)
    ch = int(np.argmax(np.abs(col - bg)))
    return (frames[..., ch].astype(np.float64) - bg[ch]) / (col[ch] - bg[ch])


def _reference_coverage(obj, t, height, width, ss=8):
    """Plain reference: supersampled point-in-shape test, object copies at ±W, ±H (torus)."""
    m = min(height, width)
    d = obj.size * m
    # centre from first principles
    if obj.motion in w.LINEAR_MOTIONS:
        vx = {"left": -obj.speed, "right": obj.speed}.get(obj.motion, 0.0)
        vy = {"up": -obj.speed, "down": obj.speed}.get(obj.motion, 0.0)
        cx = ((obj.x0 + vx * t) % 1.0) * width
        cy = ((obj.y0 + vy * t) % 1.0) * height
    else:
        assert obj.motion == "still"
        cx, cy = obj.x0 * width, obj.y0 * height
    sub = (np.arange(ss) + 0.5) / ss
    ys = (np.arange(height)[:, None] + sub[None, :]).reshape(-1)
    xs = (np.arange(width)[:, None] + sub[None, :]).reshape(-1)
    py, px = np.meshgrid(ys, xs, indexing="ij")
    inside = np.zeros(py.shape, dtype=bool)
    for ox in (-width, 0, width):
        for oy in (-height, 0, height):
            qx, qy = px - (cx + ox), py - (cy + oy)
            if obj.shape == "circle":
                inside |= qx**2 + qy**2 <= (d / 2) ** 2
            elif obj.shape == "square":
                side = math.sqrt(math.pi) / 2 * d          # equal area with the disc
                inside |= (np.abs(qx) <= side / 2) & (np.abs(qy) <= side / 2)
            else:
                a = math.sqrt(math.pi / math.sqrt(3)) * d  # equal area with the disc
                hgt = a * math.sqrt(3) / 2
                verts = [(0.0, -2 * hgt / 3), (a / 2, hgt / 3), (-a / 2, hgt / 3)]  # centroid at 0
                signs = []
                for (x1, y1), (x2, y2) in zip(verts, verts[1:] + verts[:1]):
                    signs.append((x2 - x1) * (qy - y1) - (y2 - y1) * (qx - x1))
                inside |= ((signs[0] >= 0) & (signs[1] >= 0) & (signs[2] >= 0)) | (
                    (signs[0] <= 0) & (signs[1] <= 0) & (signs[2] <= 0))
    return inside.reshape(height, ss, width, ss).mean(axis=(1, 3))


@pytest.mark.parametrize("seed", range(6))
def test_render_matches_supersampled_reference(seed):
    rng = np.random.default_rng(1000 + seed)
    scene = w.sample_scene(rng, max_objects=1)
    scene.texture = False
    obj = scene.objects[0]
    H, W, fps = [(24, 40, 5.0), (40, 24, 3.0), (32, 32, 7.0)][seed % 3]
    times = [0.0, 1.3, 7.9]  # the last one has wrapped for most linear motions
    frames = shapes_render.render(scene, int(8 * fps) + 1, H, W, fps)
    for t in times:
        k = int(round(t * fps))
        ref = _reference_coverage(obj, k / fps, H, W)
        got = _alpha(frames[k], scene)
        err = np.abs(got - ref)
        # signed-distance AA matches area coverage within the reference's 1/8-px sampling,
        # except at a few pixels next to corners (edge-line distance, documented)
        assert err.max() < 0.4
        assert (err > 0.1).sum() <= 6
        assert err[(ref > 0) | (got > 0)].mean() < 0.06
        assert abs(got.sum() - ref.sum()) < 0.03 * ref.sum() + 1.0


def test_equal_area_for_all_shapes():
    base = w.ObjectSpec("circle", "white", "still", size=0.4, x0=0.5, y0=0.5)
    expected = math.pi / 4 * (0.4 * 96) ** 2
    for shape in w.SHAPES:
        scene = w.SceneSpec([replace(base, shape=shape)], "black")
        area = _alpha(shapes_render.render(scene, 1, 96, 128, 8)[0], scene).sum()
        assert abs(area - expected) < 0.01 * expected


@pytest.mark.parametrize("T,H,W,fps", [(1, 8, 8, 1.0), (5, 33, 17, 30.0), (12, 64, 96, 8.0), (3, 100, 60, 2.5)])
def test_render_any_size(T, H, W, fps):
    scene = w.sample_scene(np.random.default_rng(T * H), max_objects=2)
    frames = shapes_render.render(scene, T, H, W, fps)
    assert frames.shape == (T, H, W, 3) and frames.dtype == np.uint8


def test_render_bad_arguments():
    scene = w.sample_scene(np.random.default_rng(0))
    for args in [(0, 32, 32, 8), (4, 4, 32, 8), (4, 32, 32, 0), (4, 32, 32, -1.0), (2.5, 32, 32, 8)]:
        with pytest.raises(ValueError):
            shapes_render.render(scene, *args)


def _centroid_x(frames, scene):
    a = _alpha(frames, scene)
    wgt = a.sum(axis=1)  # T×W
    ang = 2 * np.pi * (np.arange(frames.shape[2]) + 0.5) / frames.shape[2]
    return np.angle((wgt * np.exp(1j * ang)).sum(1)) / (2 * np.pi) % 1.0


@pytest.mark.parametrize("fps,H,W", [(4.0, 32, 48), (8.0, 64, 64), (24.0, 40, 80)])
def test_speed_is_frame_widths_per_second(fps, H, W):
    obj = w.ObjectSpec("square", "white", "right", size=0.3, x0=0.2, y0=0.5, speed=0.2)
    scene = w.SceneSpec([obj], "black")
    frames = shapes_render.render(scene, int(2 * fps) + 1, H, W, fps)
    x = _centroid_x(frames, scene)
    assert abs((x[-1] - x[0]) % 1.0 - 0.4) < 0.01  # 2 s at 0.2 frame widths per second


def test_long_clip_keeps_object_whole_on_torus():
    rng = np.random.default_rng(3)
    for motion in w.LINEAR_MOTIONS:
        scene = w.sample_scene(rng, max_objects=1, motions=[motion])
        scene.texture = False
        area = _alpha(shapes_render.render(scene, 121, 32, 32, 2.0), scene).sum(axis=(1, 2))  # 60 s
        assert area.min() > 0.97 * area.max()


def test_bounce_and_orbit_stay_inside_frame():
    rng = np.random.default_rng(4)
    for motion in ("bounce", "orbit"):
        for _ in range(10):
            scene = w.sample_scene(rng, max_objects=1, motions=[motion])
            scene.texture = False
            frames = shapes_render.render(scene, 80, 48, 48, 8.0)
            a = _alpha(frames, scene)
            border = np.concatenate([a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1]], axis=1)
            assert border.max() < 0.05
            assert a.sum(axis=(1, 2)).min() > 0.97 * a.sum(axis=(1, 2)).max()


def test_two_objects_never_overlap():
    rng = np.random.default_rng(5)
    n_two = 0
    for _ in range(60):
        scene = w.sample_scene(rng, max_objects=2, multi_prob=0.8, motions=w.MOTIONS)
        if len(scene.objects) < 2:
            continue
        n_two += 1
        assert scene.objects[0].color != scene.objects[1].color
        masks = []
        for obj in scene.objects:
            single = w.SceneSpec([obj], "black")
            masks.append(_alpha(shapes_render.render(single, 61, 32, 32, 1.0), single) > 0)  # 60 s
        assert not (masks[0] & masks[1]).any()
    assert n_two > 20


def test_make_clip_deterministic_per_seed():
    a = shapes_clips.make_clip(123, 9, 32, 48, 8.0)
    b = shapes_clips.make_clip(123, 9, 32, 48, 8.0)
    c = shapes_clips.make_clip(124, 9, 32, 48, 8.0)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    assert not (np.array_equal(a[0], c[0]) and a[1] == c[1])
    # the same seed at another size shows the same scene
    d = shapes_clips.make_clip(123, 5, 64, 96, 4.0)
    assert d[1] == a[1] and d[2] == a[2]


def test_make_clip_still_prob_and_errors():
    for seed in range(10):
        _, _, scene = shapes_clips.make_clip(seed, 2, 16, 16, 8.0, still_prob=1.0)
        assert all(o.motion == "still" for o in scene.objects)
    with pytest.raises(ValueError):
        shapes_clips.make_clip(-1, 2, 16, 16, 8.0)
    with pytest.raises(ValueError):
        shapes_clips.make_clip(0, 2, 16, 16, 8.0, still_prob=1.5)


def test_sample_scene_respects_arguments():
    rng = np.random.default_rng(6)
    seen_motions, seen_colors, seen_shapes, seen_bgs, n_obj = set(), set(), set(), set(), set()
    for _ in range(300):
        scene = w.sample_scene(rng)
        n_obj.add(len(scene.objects))
        seen_bgs.add(scene.background)
        for o in scene.objects:
            seen_motions.add(o.motion)
            seen_colors.add(o.color)
            seen_shapes.add(o.shape)
            assert w.SIZE_RANGE[0] <= o.size <= w.SIZE_RANGE[1]
            if o.motion in w.LINEAR_MOTIONS:
                assert w.SPEED_RANGE[0] <= o.speed <= w.SPEED_RANGE[1]
    assert seen_motions == set(w.BASIC_MOTIONS)
    assert seen_colors == set(w.COLORS) and seen_shapes == set(w.SHAPES) and seen_bgs == set(w.BACKGROUNDS)
    assert n_obj == {1, 2}
    for _ in range(30):
        scene = w.sample_scene(rng, max_objects=1, motions=["left", "orbit"])
        assert len(scene.objects) == 1 and scene.objects[0].motion in ("left", "orbit")
    for bad in [dict(max_objects=3), dict(max_objects=0), dict(motions=["sideways"]), dict(motions=[]),
                dict(multi_prob=2.0)]:
        with pytest.raises(ValueError):
            w.sample_scene(rng, **bad)


def _trailing_fraction(obj):
    """Where a single-object linear mover starts along its axis: 0 = the edge it moves away from."""
    hx, hy = (e * obj.size + w._MARGIN for e in w._HALF_EXTENT[obj.shape])
    if obj.motion in ("left", "right"):
        u = (obj.x0 - hx) / (1.0 - 2 * hx)
        return u if obj.motion == "right" else 1.0 - u
    u = (obj.y0 - hy) / (1.0 - 2 * hy)
    return u if obj.motion == "down" else 1.0 - u


@pytest.mark.parametrize("entry_prob, lo, hi", [(0.0, 0.2, 0.4), (0.5, 0.55, 0.75), (1.0, 1.0, 1.0)])
def test_entry_prob_starts_movers_near_the_edge_they_come_from(entry_prob, lo, hi):
    rng = np.random.default_rng(11)
    fracs = []
    for _ in range(400):
        scene = w.sample_scene(rng, max_objects=1, motions=w.MOTIONS, entry_prob=entry_prob)
        o = scene.objects[0]
        if o.motion in w.LINEAR_MOTIONS:
            fracs.append(_trailing_fraction(o))
            assert w.SPEED_RANGE[0] <= o.speed <= w.SPEED_RANGE[1]
        assert 0.0 < o.x0 < 1.0 and 0.0 < o.y0 < 1.0
    fracs = np.array(fracs)
    assert len(fracs) > 150 and fracs.min() >= -1e-9 and fracs.max() <= 1 + 1e-9
    # uniform starts put ~ENTRY_SPAN of movers in the trailing span; entry starts put all there
    inside = float(np.mean(fracs <= w.ENTRY_SPAN + 1e-9))
    assert lo <= inside <= hi, inside


def test_entry_prob_zero_draws_the_same_scenes_and_bad_values_fail():
    for seed in range(20):
        assert w.sample_scene(np.random.default_rng(seed)) == w.sample_scene(np.random.default_rng(seed), entry_prob=0.0)
    _, _, scene = shapes_clips.make_clip(3, 5, 16, 16, 8.0, max_objects=1, motions=["right"], entry_prob=1.0)
    assert _trailing_fraction(scene.objects[0]) <= w.ENTRY_SPAN + 1e-9
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="entry_prob"):
            w.sample_scene(np.random.default_rng(0), entry_prob=bad)


def test_spec_validation():
    with pytest.raises(ValueError):
        w.ObjectSpec("hexagon", "red", "left", 0.2, 0.5, 0.5)
    with pytest.raises(ValueError):
        w.ObjectSpec("circle", "black", "left", 0.2, 0.5, 0.5)
    with pytest.raises(ValueError):
        w.ObjectSpec("circle", "red", "orbit", 0.2, 0.5, 0.5)  # no period
    with pytest.raises(ValueError):
        w.SceneSpec([], "black")
    with pytest.raises(ValueError):
        w.SceneSpec([w.ObjectSpec("circle", "red", "left", 0.2, 0.5, 0.5)], "white")


def test_texture_is_subtle_and_static():
    obj = w.ObjectSpec("circle", "red", "still", 0.2, 0.2, 0.2)
    plain = shapes_render.render(w.SceneSpec([obj], "gray"), 3, 48, 48, 8.0).astype(int)
    tex = shapes_render.render(w.SceneSpec([obj], "gray", texture=True, texture_seed=9), 3, 48, 48, 8.0).astype(int)
    far = np.zeros((48, 48), dtype=bool)
    far[30:, 30:] = True  # away from the object
    diff = (tex - plain)[:, far]
    assert 0 < np.abs(diff).max() <= w.TEXTURE_AMPLITUDE + 1
    assert np.array_equal(tex[0], tex[2])


def _triples(scene):
    return [(o.color, o.shape, o.motion) for o in scene.objects]


def test_caption_parse_round_trip():
    rng = np.random.default_rng(7)
    for seed in range(400):
        scene = w.sample_scene(rng, motions=w.MOTIONS if seed % 2 else None)
        text = shapes_language.caption(scene, rng)
        target = shapes_language.parse_prompt(text)
        assert [(o.color, o.shape, o.motion) for o in target.objects] == _triples(scene), text
        assert target.background in (None, scene.background), text
        assert target.texture in (None, scene.texture), text


def test_captions_are_varied():
    rng = np.random.default_rng(8)
    scene = w.SceneSpec([w.ObjectSpec("circle", "red", "left", 0.25, 0.5, 0.5, speed=0.2)], "gray")
    texts = {shapes_language.caption(scene, rng) for _ in range(200)}
    assert len(texts) > 100
    words = " ".join(texts).lower()
    for word in ("ball", "disc", "drifting", "gray", "crimson", "leftward"):
        assert word in words
    assert any("background" not in t and "backdrop" not in t and "gray" not in t and "grey" not in t for t in texts)


@pytest.mark.parametrize("text,objects,background", [
    ("red ball drifting left", [("red", "circle", "left")], None),
    ("a red circle moving to the left on a gray background", [("red", "circle", "left")], "gray"),
    ("A static white box on navy.", [("white", "square", "still")], "dark blue"),
    ("a dark blue square falling on a black background", [("blue", "square", "down")], "black"),
    ("an orange triangle crossing from right to left on grey", [("orange", "triangle", "left")], "gray"),
    ("a cyan block moving from bottom to top", [("cyan", "square", "up")], None),
    ("a purple disc that does not move", [("purple", "circle", "still")], None),
    ("a green block and a yellow dot, both sinking", [("green", "square", "down"), ("yellow", "circle", "down")], None),
    ("a red circle moving left and a static blue square", [("red", "circle", "left"), ("blue", "square", "still")],
     None),
    ("a white ball bouncing up and down", [("white", "circle", "bounce")], None),
    ("a violet triangle circling around", [("purple", "triangle", "orbit")], None),
    ("a circle moving right", [(None, "circle", "right")], None),
    ("something red", [("red", None, None)], None),
    ("moving up", [(None, None, "up")], None),
    ("a red circle moving left on a white background", [("red", "circle", "left")], None),
])
def test_parse_prompt_examples(text, objects, background):
    target = shapes_language.parse_prompt(text)
    assert [(o.color, o.shape, o.motion) for o in target.objects] == objects
    assert target.background == background


@pytest.mark.parametrize("text", ["", "lorem ipsum dolor sit amet", "a gray background", "qwerty zxcv 123"])
def test_parse_prompt_rejects_gibberish(text):
    with pytest.raises(ValueError):
        shapes_language.parse_prompt(text)
    with pytest.raises(ValueError):
        shapes_language.parse_prompt(None)


def test_eval_prompts_cover_the_vocabulary():
    assert len(shapes_prompts.EVAL_PROMPTS) >= 40 and len(set(shapes_prompts.EVAL_PROMPTS)) == len(shapes_prompts.EVAL_PROMPTS)
    seen = {"color": set(), "shape": set(), "motion": set(), "background": set()}
    for p in shapes_prompts.EVAL_PROMPTS:
        t = shapes_language.parse_prompt(p)
        assert len(t.objects) == 1 and None not in (t.objects[0].color, t.objects[0].shape, t.objects[0].motion)
        seen["color"].add(t.objects[0].color)
        seen["shape"].add(t.objects[0].shape)
        seen["motion"].add(t.objects[0].motion)
        seen["background"].add(t.background)
    assert seen == {"color": set(w.COLORS), "shape": set(w.SHAPES), "motion": set(w.BASIC_MOTIONS),
                    "background": set(w.BACKGROUNDS)}
    assert len(shapes_prompts.EVAL_PROMPTS_TWO) >= 4
    for p in shapes_prompts.EVAL_PROMPTS_TWO:
        t = shapes_language.parse_prompt(p)
        assert len(t.objects) == 2 and t.objects[0].color != t.objects[1].color
        assert all(None not in (o.color, o.shape, o.motion) for o in t.objects)


def test_scene_from_prompt_keeps_named_attributes():
    rng = np.random.default_rng(9)
    for p in shapes_prompts.EVAL_PROMPTS + shapes_prompts.EVAL_PROMPTS_TWO:
        scene = shapes_clips.scene_from_prompt(p, rng)
        t = shapes_language.parse_prompt(p)
        assert _triples(scene) == [(o.color, o.shape, o.motion) for o in t.objects]
        assert scene.background == t.background
    scene = shapes_clips.scene_from_prompt("a ball", rng)
    assert scene.objects[0].shape == "circle" and scene.objects[0].color in w.COLORS


def test_render_long_clip():
    """A 60 s clip renders whole (its speed is a benchmark's business, not a unit test's)."""
    scene = w.sample_scene(np.random.default_rng(10), max_objects=2, multi_prob=1.0)
    frames = shapes_render.render(scene, 481, 128, 128, 8.0)
    assert frames.shape == (481, 128, 128, 3) and frames.dtype == np.uint8
    # the objects move: the last frame is not the first
    assert (frames[0] != frames[-1]).any()
