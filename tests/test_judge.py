"""The shapes-world judge: ground truth scores high, wrong renders score low, parts vs references."""
from collections import deque
from dataclasses import replace

import numpy as np
import pytest

from lingen_model.shapes import judge as j
from lingen_model.shapes import world as w
from lingen_model.shapes import clips as shapes_clips
from lingen_model.shapes import language as shapes_language
from lingen_model.shapes import prompts as shapes_prompts
from lingen_model.shapes import render as shapes_render

CRIT = ("color", "shape", "motion")


def _blur(frames, sigma):
    """Separable Gaussian blur (edge padding) of a uint8 clip, sigma in pixels."""
    r = int(3 * sigma) + 1
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    x = np.pad(frames.astype(np.float32), ((0, 0), (r, r), (0, 0), (0, 0)), mode="edge")
    n = frames.shape[1]
    x = sum(k[i] * x[:, i:i + n] for i in range(2 * r + 1))
    x = np.pad(x, ((0, 0), (0, 0), (r, r), (0, 0)), mode="edge")
    n = frames.shape[2]
    x = sum(k[i] * x[:, :, i:i + n] for i in range(2 * r + 1))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _washed_out(frames, rng, sigma=2.0, desat=0.3, noise=4.0):
    """What a small generator tends to do: blur, desaturate, add temporal noise."""
    x = _blur(frames, sigma).astype(np.float32)
    m = x.mean(-1, keepdims=True)
    x = m + (x - m) * (1 - desat) + noise * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _pass_rates(results):
    return {c: float(np.mean([r["passed"][c] for r in results])) for c in j.CRITERIA}


@pytest.mark.parametrize("size", [64, 128])
def test_ground_truth_scores_high(size):
    results = []
    for seed in range(40):
        frames, text, _ = shapes_clips.make_clip(seed + 100 * size, 33, size, size, 8.0)  # 4 s at 8 fps
        results.append(j.score_clip(frames, text, 8.0))
    rates = _pass_rates(results)
    assert all(rates[c] >= 0.95 for c in CRIT), rates
    for c in j.CRITERIA:
        assert np.mean([r[c] for r in results]) >= 0.9, c


def test_ground_truth_bounce_orbit_and_other_rates():
    results = []
    for seed in range(12):
        frames, text, scene = shapes_clips.make_clip(seed, 33, 96, 128, 8.0, motions=["bounce", "orbit"])
        results.append(j.score_clip(frames, text, 8.0))
    for seed in range(12):  # other frame rates and lengths, non-square
        fps = (4.0, 12.0, 24.0)[seed % 3]
        frames, text, scene = shapes_clips.make_clip(seed, int(3 * fps) + 1, 80, 112, fps)
        results.append(j.score_clip(frames, text, fps))
    rates = _pass_rates(results)
    assert all(rates[c] >= 0.95 for c in CRIT), rates


def test_ground_truth_sixty_seconds():
    rng = np.random.default_rng(11)
    for prompt, size in ((shapes_prompts.EVAL_PROMPTS[0], 128), (shapes_prompts.EVAL_PROMPTS_TWO[0], 64)):
        frames = shapes_render.render(shapes_clips.scene_from_prompt(prompt, rng), 481, size, size, 8.0)  # 60 s at 8 fps
        s = j.score_clip(frames, prompt, 8.0)
        assert all(s[c] >= 0.9 for c in j.CRITERIA), s


def test_eval_prompts_ground_truth_pass():
    rng = np.random.default_rng(12)
    results = []
    for prompt in shapes_prompts.EVAL_PROMPTS + shapes_prompts.EVAL_PROMPTS_TWO:
        frames = shapes_render.render(shapes_clips.scene_from_prompt(prompt, rng), 33, 64, 64, 8.0)
        results.append(j.score_clip(frames, prompt, 8.0))
    rates = _pass_rates(results)
    assert all(v >= 0.95 for v in rates.values()), rates


def test_washed_out_renders_still_pass():
    """Fair on blurry, desaturated, noisy video (what a small model makes)."""
    rng = np.random.default_rng(13)
    results = []
    for seed in range(24):
        frames, text, _ = shapes_clips.make_clip(seed + 5000, 17, 128, 128, 8.0)  # 2 s at 8 fps
        results.append(j.score_clip(_washed_out(frames, rng), text, 8.0))
    rates = _pass_rates(results)
    assert all(rates[c] >= 0.9 for c in CRIT + ("persistence",)), rates


def test_low_contrast_objects_found_on_every_background():
    """Objects blended 40% into the background and blurred keep colour, shape and motion."""
    for bg in w.BACKGROUNDS:
        for i, color in enumerate(w.COLORS):
            shape = w.SHAPES[i % 3]
            scene = w.SceneSpec([w.ObjectSpec(shape, color, "up", 0.25, 0.5, 0.5, speed=0.15)], bg)
            frames = shapes_render.render(scene, 17, 64, 64, 8.0).astype(np.float32)
            b = np.array(w.BACKGROUNDS[bg], np.float32)
            frames = _blur(np.clip(np.rint(b + 0.6 * (frames - b)), 0, 255).astype(np.uint8), 1.0)
            s = j.score_clip(frames, f"a {color} {shape} moving up", 8.0)
            assert all(s[c] >= 0.9 for c in CRIT + ("persistence",)), (bg, color, s)


def test_same_verdict_at_64_128_256():
    rng = np.random.default_rng(14)
    for _ in range(4):
        scene = w.sample_scene(rng, max_objects=1)
        text = shapes_language.caption(scene, rng)
        found = []
        for size in (64, 128, 256):
            d = j.score_clip(shapes_render.render(scene, 17, size, size, 8.0), text, 8.0)["detected"]
            found.append((d["color"], d["shape"], d["motion"]))
        o = scene.objects[0]
        assert found == [(o.color, o.shape, o.motion)] * 3


def _single_scenes(rng, n):
    for _ in range(n):
        scene = w.sample_scene(rng, max_objects=1)
        yield scene, scene.objects[0], shapes_language.caption(scene, rng)


def test_wrong_color_scores_low():
    rng = np.random.default_rng(15)
    for i, (scene, o, text) in enumerate(_single_scenes(rng, 21)):
        other = [c for c in w.COLORS if c != o.color][i % 7]
        s = j.score_clip(shapes_render.render(replace(scene, objects=[replace(o, color=other)]), 17, 64, 64, 8.0), text, 8.0)
        assert s["color"] <= 0.1 and s["persistence"] <= 0.1, (text, other)
        assert s["detected"]["color"] == other
        # shape and motion are still judged, on the blob that is there
        assert s["shape"] >= 0.9 and s["motion"] == 1.0


def test_wrong_shape_scores_low():
    rng = np.random.default_rng(16)
    for i, (scene, o, text) in enumerate(_single_scenes(rng, 20)):
        other = [s for s in w.SHAPES if s != o.shape][i % 2]
        s = j.score_clip(shapes_render.render(replace(scene, objects=[replace(o, shape=other)]), 17, 64, 64, 8.0), text, 8.0)
        assert s["shape"] <= 0.1 and s["color"] == 1.0, (text, other)


def test_wrong_direction_scores_low():
    rng = np.random.default_rng(17)
    for i, (scene, o, text) in enumerate(_single_scenes(rng, 20)):
        other = [m for m in w.BASIC_MOTIONS if m != o.motion][i % 4]
        o2 = replace(o, motion=other, speed=o.speed or 0.15)
        s = j.score_clip(shapes_render.render(replace(scene, objects=[o2]), 33, 64, 64, 8.0), text, 8.0)
        assert s["motion"] == 0.0 and s["detected"]["motion"] == other, (text, other)


def test_two_object_prompt_scores_each_object():
    prompt = "a red circle moving left and a blue square moving right on a black background"
    scene = shapes_clips.scene_from_prompt(prompt, np.random.default_rng(18))
    good = j.score_clip(shapes_render.render(scene, 33, 64, 64, 8.0), prompt, 8.0)
    assert all(good[c] == 1.0 for c in CRIT)
    a, b = scene.objects
    swapped = replace(scene, objects=[replace(a, motion="right"), replace(b, motion="left")])
    s = j.score_clip(shapes_render.render(swapped, 33, 64, 64, 8.0), prompt, 8.0)
    assert s["motion"] == 0.0 and s["color"] == 1.0
    one_wrong = replace(scene, objects=[a, replace(b, color="green")])
    s = j.score_clip(shapes_render.render(one_wrong, 33, 64, 64, 8.0), prompt, 8.0)
    assert s["color"] == pytest.approx(0.5) and s["persistence"] == pytest.approx(0.5)


def test_noise_and_empty_clips_fail():
    rng = np.random.default_rng(19)
    for size in (64, 128):
        noise = rng.integers(0, 256, (17, size, size, 3), dtype=np.uint8)
        for c in w.COLORS:
            s = j.score_clip(noise, f"a {c} circle moving left", 8.0)
            assert s["flicker"] < 0.1 and s["persistence"] < 0.2 and s["color"] < 0.2 and s["motion"] == 0.0
    empty = np.full((17, 64, 64, 3), 118, dtype=np.uint8)
    s = j.score_clip(empty, "a red circle moving left", 8.0)
    assert s["flicker"] == 1.0 and max(s[c] for c in ("color", "shape", "motion", "persistence")) == 0.0


def test_flicker_matches_reference_mae():
    rng = np.random.default_rng(20)
    base = np.broadcast_to(rng.integers(40, 200, (1, 64, 96, 3)), (9, 64, 96, 3))
    for amp in (0.0, 3.0, 10.0, 40.0):
        clip = np.clip(base + rng.normal(0, amp, (9, 1, 1, 1)), 0, 255).astype(np.uint8) if amp else \
            base.astype(np.uint8)
        mae = np.abs(np.diff(clip.astype(float), axis=0)).mean()  # plain reference over the whole frame
        s = j.score_clip(clip, "a red circle", 8.0)  # no counting blob: every pixel is background
        assert s["detected"]["flicker_mae"] == pytest.approx(mae, abs=1e-6)
        assert s["flicker"] == pytest.approx(max(0.0, 1 - mae / j.FLICKER_SCALE), abs=1e-6)


def test_result_is_json_serialisable():
    import json

    frames, text, _ = shapes_clips.make_clip(4, 9, 48, 48, 8.0)
    for prompt in (text, "a red circle and a red square", "moving up"):
        json.dumps(j.score_clip(frames, prompt, 8.0), allow_nan=False)


def test_single_frame_clip():
    frames, text, scene = shapes_clips.make_clip(3, 1, 64, 64, 8.0, still_prob=1.0)
    s = j.score_clip(frames, text, 8.0)
    assert s["flicker"] == 1.0 and s["color"] == 1.0 and s["motion"] == 1.0


def test_bad_inputs():
    frames = shapes_clips.make_clip(0, 3, 32, 32, 8.0)[0]
    for bad in (frames.astype(np.float32), frames[..., :2], frames[0], frames[:, :4]):
        with pytest.raises(ValueError):
            j.score_clip(bad, "a red circle", 8.0)
    for fps in (0, -2.0, float("nan"), "8"):
        with pytest.raises(ValueError):
            j.score_clip(frames, "a red circle", fps)
    with pytest.raises(ValueError):
        j.score_clip(frames, "lorem ipsum", 8.0)


def test_score_batch_summary():
    clips, prompts = [], []
    for seed in range(5):
        f, t, _ = shapes_clips.make_clip(seed, 9, 48, 48, 8.0)
        clips.append(f)
        prompts.append(t if seed % 2 else "a white triangle moving up")
    per, summary = j.score_batch(clips, prompts, 8.0)
    assert summary["n"] == 5 and len(per) == 5
    for c in j.CRITERIA:
        direct = [j.score_clip(f, p, 8.0)[c] for f, p in zip(clips, prompts)]
        assert summary["mean"][c] == pytest.approx(np.mean(direct))
        assert summary["pass_pct"][c] == pytest.approx(100 * np.mean([d >= j.PASS_THRESHOLDS[c] for d in direct]))
    per2, _ = j.score_batch(clips, prompts, [8.0] * 5)
    assert [p["color"] for p in per2] == [p["color"] for p in per]
    with pytest.raises(ValueError):
        j.score_batch(clips, prompts[:4], 8.0)
    with pytest.raises(ValueError):
        j.score_batch([], [], 8.0)
    with pytest.raises(ValueError):
        j.score_batch(clips, prompts, [8.0] * 4)


# --------------------------------------------------------------------------- parts


def _reference_components(labels):
    """Breadth-first flood fill, 8-neighbours, wrapping edges: the obvious algorithm."""
    T, h, w_ = labels.shape
    out = np.full(labels.shape, -1, dtype=np.int64)
    for t in range(T):
        for y in range(h):
            for x in range(w_):
                if labels[t, y, x] < 0 or out[t, y, x] >= 0:
                    continue
                members, queue = [], deque([(y, x)])
                out[t, y, x] = 0
                while queue:
                    cy, cx = queue.popleft()
                    members.append((cy, cx))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = (cy + dy) % h, (cx + dx) % w_
                            if out[t, ny, nx] < 0 and labels[t, ny, nx] == labels[t, y, x]:
                                out[t, ny, nx] = 0
                                queue.append((ny, nx))
                root = min(t * h * w_ + my * w_ + mx for my, mx in members)
                for my, mx in members:
                    out[t, my, mx] = root
    return out


@pytest.mark.parametrize("seed", range(5))
def test_connected_components_match_flood_fill(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, 3, size=(3, 11, 14)).astype(np.int8)
    labels[rng.random(labels.shape) < 0.3] = -1
    assert np.array_equal(j.connected_components(labels), _reference_components(labels))


def test_srgb_to_lab_reference_values():
    # Published CIELAB (D65) values of the sRGB primaries and white.
    ref = {(255, 255, 255): (100.0, 0.0, 0.0), (255, 0, 0): (53.24, 80.09, 67.20),
           (0, 255, 0): (87.73, -86.18, 83.18), (0, 0, 255): (32.30, 79.19, -107.86)}
    for rgb, lab in ref.items():
        np.testing.assert_allclose(j.srgb_to_lab(np.array(rgb, float)), lab, atol=0.05)


def test_classify_pixels_matches_name_colors():
    rng = np.random.default_rng(23)
    frames = rng.integers(0, 256, (4, 9, 11, 3), dtype=np.uint8)
    frames[:, :5, :] = (118, 118, 118)  # a majority background
    labels, bg = j.classify_pixels(frames)
    np.testing.assert_array_equal(bg, np.median(frames.reshape(4, -1, 3), axis=1))
    q = j.lut_colors(frames)
    for t in range(4):
        named = j.name_colors(q[t], background=bg[t])
        far = np.linalg.norm(j.srgb_to_lab(q[t]) - j.srgb_to_lab(bg[t]), axis=-1) > j.FG_THRESHOLD
        np.testing.assert_array_equal(labels[t], np.where(far, named, -1))


def test_white_is_relative_to_the_background():
    white = list(w.COLORS).index("white")
    dim = np.array([130.0, 130.0, 130.0])
    assert j.name_colors(dim, background=np.array(w.BACKGROUNDS["black"], float)) == white
    assert j.name_colors(dim, background=np.array(w.BACKGROUNDS["gray"], float)) == -1
    assert j.name_colors(np.array([235.0, 235.0, 235.0]), background=np.array([118.0] * 3)) == white


def test_name_colors_keeps_hue_when_washed_out():
    for i, (name, rgb) in enumerate(w.COLORS.items()):
        c = np.array(rgb, float)
        assert j.name_colors(c) == i
        if name != "white":
            gray = c.mean()
            assert j.name_colors(gray + 0.5 * (c - gray)) == i      # half desaturated
            assert j.name_colors(0.5 * c) == i                      # half as bright
            assert j.name_colors(0.6 * c + 0.4 * 118) == i          # blended with the gray background
    for neutral in ((0, 0, 0), (118, 118, 118), (60, 60, 60)):
        assert j.name_colors(np.array(neutral, float)) == -1


def _mask_invariants(mask):
    yy, xx = np.nonzero(mask)
    c3, c4 = j._moment_invariants(np.zeros(len(xx), dtype=np.int64), xx + 0.5, yy + 0.5, 1)
    return j.world.SHAPES[int(j.classify_shape(c3, c4)[0])]


def test_shape_classes_are_affine_invariant():
    """Rotated, stretched and sheared shapes keep their class (moment invariants)."""
    rng = np.random.default_rng(21)
    n = 96
    yy, xx = np.mgrid[0:n, 0:n] + 0.5 - n / 2
    for _ in range(12):
        ang = rng.uniform(0, np.pi)
        stretch = rng.uniform(0.7, 1.4)
        shear = rng.uniform(-0.3, 0.3)
        a = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) @ np.array([[stretch, shear], [0, 1]])
        inv = np.linalg.inv(a)
        u = inv[0, 0] * xx + inv[0, 1] * yy
        v = inv[1, 0] * xx + inv[1, 1] * yy
        for shape in w.SHAPES:
            mask = shapes_render.signed_distance(shape, 30.0, u, v) < 0
            assert _mask_invariants(mask) == shape


def test_classify_motion_on_synthetic_tracks():
    fps = 8.0
    t = np.arange(40)
    rng = np.random.default_rng(22)
    jit = lambda: rng.normal(0, 0.003, t.shape)  # noqa: E731  (~0.2 px at 64 px)
    # leftward across the wrap seam
    x = np.mod(0.1 - 0.15 * t / fps, 1.0)
    assert j.classify_motion(t, x, 0.5 + jit(), fps, 64, 64)["motion"] == "left"
    r = j.classify_motion(t, x, np.full(t.shape, 0.5), fps, 64, 64)
    assert r["vx"] == pytest.approx(-0.15, abs=1e-6)
    assert j.classify_motion(t, 0.5 + jit(), np.mod(0.9 + 0.12 * t / fps, 1.0), fps, 64, 64)["motion"] == "down"
    assert j.classify_motion(t, 0.3 + jit(), 0.6 + jit(), fps, 64, 64)["motion"] == "still"
    ang = 2 * np.pi * t / fps / 4.0
    assert j.classify_motion(t, 0.5 + 0.2 * np.cos(ang), 0.5 + 0.2 * np.sin(ang), fps, 64, 64)["motion"] == "orbit"
    hop = 0.8 - 0.4 * np.abs(np.sin(np.pi * t / fps / 1.5))
    assert j.classify_motion(t, 0.5 + jit(), hop, fps, 64, 64)["motion"] == "bounce"
    # gaps in the track are fine
    keep = rng.random(t.shape) < 0.6
    assert j.classify_motion(t[keep], x[keep], np.full(keep.sum(), 0.5), fps, 64, 64)["motion"] == "left"
    assert j.classify_motion(t[:1], x[:1], x[:1], fps, 64, 64)["motion"] is None


def test_blob_split_across_the_seam_is_one_object():
    """The world wraps; a blob crossing the frame edge keeps its true centroid and shape."""
    for x0, y0 in ((0.02, 0.5), (0.5, 0.97), (0.99, 0.01)):
        obj = w.ObjectSpec("square", "red", "still", 0.3, x0, y0)
        frames = shapes_render.render(w.SceneSpec([obj], "black"), 1, 64, 64, 8.0)
        labels, _ = j.classify_pixels(frames)
        blobs = j._Blobs(labels, 1)
        red = list(w.COLORS).index("red")
        side = np.sqrt(np.pi) / 2 * 0.3 * 64  # pixels; hard labels also count the AA rim
        assert (side - 1) ** 2 <= blobs.area[0, red, 0] <= (side + 2) ** 2
        dx = (blobs.cx[0, red, 0] - x0 + 0.5) % 1.0 - 0.5
        dy = (blobs.cy[0, red, 0] - y0 + 0.5) % 1.0 - 0.5
        assert abs(dx) < 0.01 and abs(dy) < 0.01
        assert w.SHAPES[blobs.shape[0, red, 0]] == "square"


def test_criteria_the_prompt_does_not_name_are_not_judged():
    """A prompt naming a shape the world lacks ("hexagon") or no motion gets no vacuous 1.0: the
    criterion is None (not judged) and summarize() leaves the clip out of that rate's n."""
    scene = shapes_clips.scene_from_prompt("a purple circle moving left", np.random.default_rng(0))
    frames = shapes_render.render(scene, 33, 64, 64, 8.0)
    s = j.score_clip(frames, "a purple hexagon dancing", 8.0)
    assert s["shape"] is None and s["motion"] is None and s["motion_consistency"] is None
    assert s["passed"]["shape"] is None and s["passed"]["motion"] is None
    assert s["color"] == pytest.approx(1.0) and s["passed"]["color"] and s["passed"]["unity"]
    wrong = shapes_render.render(replace(scene, objects=[replace(scene.objects[0], shape="square")]), 33, 64, 64, 8.0)
    full = j.score_clip(wrong, "a purple circle moving left", 8.0)
    assert not full["passed"]["shape"]
    summary = j.summarize([s, full])
    assert summary["n"] == 2 and summary["n_judged"]["shape"] == 1 and summary["n_judged"]["color"] == 2
    assert summary["passed"]["shape"] == 0 and summary["pass_pct"]["shape"] == 0.0
    only = j.summarize([s])
    assert only["mean"]["shape"] is None and only["pass_pct"]["shape"] is None and only["pass_ci95"]["shape"] is None
