"""The judge's coherence criteria (unity, motion_consistency, jumps): the world's own renders
pass them all, short and long; corrupted renders (a second copy, fragments, the second half
played backwards, a teleport) fail the criterion they break; parts against plain references.
Seeds are fixed in each test."""
from dataclasses import replace

import numpy as np
import pytest

from lingen_model.shapes import judge as j
from lingen_model.shapes import world as w
from lingen_model.shapes import clips as shapes_clips
from lingen_model.shapes import language as shapes_language
from lingen_model.shapes import render as shapes_render

FPS = 8.0


def _coh_passed(s):
    return {c: s["passed"][c] for c in j.COHERENCE}


def _one_object(seed, motions=w.LINEAR_MOTIONS, size=64, num_frames=33):
    """A one-object scene (from a fixed seed) with one of ``motions``, its caption and frames."""
    rng = np.random.default_rng(seed)
    scene = w.sample_scene(rng, max_objects=1, motions=motions)
    text = shapes_language.caption(scene, rng)
    return scene, text, shapes_render.render(scene, num_frames, size, size, FPS)


# --------------------------------------------------------------------------- ground truth


@pytest.mark.parametrize("size,n_scenes", [(64, 20), (128, 8)])
def test_ground_truth_passes_every_coherence_criterion(size, n_scenes):
    for seed in range(n_scenes):
        frames, text, _ = shapes_clips.make_clip(seed + 1000 * size, 33, size, size, FPS)  # 4 s, one or two objects
        s = j.score_clip(frames, text, FPS)
        assert all(_coh_passed(s).values()), (seed, text, {c: s[c] for c in j.COHERENCE})
        assert s["unity"] == 1.0 and s["motion_consistency"] == 1.0 and s["jumps"] == 0.0, (seed, text)


def test_ground_truth_bounce_orbit_and_other_rates_pass():
    for seed in range(6):
        frames, text, _ = shapes_clips.make_clip(seed, 33, 96, 128, FPS, motions=["bounce", "orbit"])
        s = j.score_clip(frames, text, FPS)
        assert all(_coh_passed(s).values()), (seed, text, {c: s[c] for c in j.COHERENCE})
    for seed in range(6):  # other frame rates and lengths, non-square
        fps = (4.0, 12.0, 24.0)[seed % 3]
        frames, text, _ = shapes_clips.make_clip(seed, int(3 * fps) + 1, 80, 112, fps)
        s = j.score_clip(frames, text, fps)
        assert all(_coh_passed(s).values()), (seed, fps, text, {c: s[c] for c in j.COHERENCE})


LONG = (("a blue circle moving to the right on a black background", 481),   # 60 s
        ("a white circle orbiting on a black background", 241),             # 30 s
        ("a green square standing still on a gray background", 241),
        ("a red triangle bouncing on a dark blue background", 241))


@pytest.mark.parametrize("prompt,n", [LONG[0], LONG[1], pytest.param(*LONG[2], marks=pytest.mark.slow),
                                      pytest.param(*LONG[3], marks=pytest.mark.slow)])
def test_ground_truth_long_clips_pass(prompt, n):
    frames = shapes_render.render(shapes_clips.scene_from_prompt(prompt, np.random.default_rng(31)), n, 64, 64, FPS)
    s = j.score_clip(frames, prompt, FPS)
    assert all(_coh_passed(s).values()), (prompt, {c: s[c] for c in j.COHERENCE})
    co = s["detected"]["objects"][0]["coherence"]
    assert len(co["consistency_by_window"]) == round(n / FPS / j.COHERENCE_WINDOW_S)
    assert all(v == 1.0 for v in co["consistency_by_window"] + co["unity_by_window"]), (prompt, co)


@pytest.mark.slow
def test_ground_truth_many_long_clips_pass():
    for seed in range(24):
        frames, text, _ = shapes_clips.make_clip(seed, 481, 64, 64, FPS, motions=w.MOTIONS)
        s = j.score_clip(frames, text, FPS)
        assert all(_coh_passed(s).values()), (seed, text, {c: s[c] for c in j.COHERENCE})


# --------------------------------------------------------------------------- corruptions


def test_second_copy_fails_unity_only():
    for seed in range(8):
        scene, text, frames = _one_object(seed, motions=w.BASIC_MOTIONS)
        obj = scene.objects[0]
        copy = replace(obj, size=0.7 * obj.size, x0=(obj.x0 + 0.5) % 1.0, y0=(obj.y0 + 0.5) % 1.0)
        dup = shapes_render.render(replace(scene, objects=[obj, copy]), 33, 64, 64, FPS)
        s = j.score_clip(dup, text, FPS)
        assert not s["passed"]["unity"] and s["unity"] < 0.1, (seed, text, s["unity"])
        assert s["passed"]["motion_consistency"] and s["passed"]["jumps"], (seed, text)
        assert s["detected"]["objects"][0]["coherence"]["blobs_of_color_median"] == 2


def test_fragments_fail_unity():
    for seed in range(6):
        scene, text, frames = _one_object(seed, motions=("still",))
        obj = scene.objects[0]
        cut = frames.copy()
        xc = int(obj.x0 * 64)
        cut[:, :, xc - 1:xc + 2] = np.asarray(w.BACKGROUNDS[scene.background], dtype=np.uint8)  # 3-px stripe
        if scene.texture:
            continue  # the stripe would differ from a textured background; plain ones suffice
        s = j.score_clip(cut, text, FPS)
        assert not s["passed"]["unity"], (seed, text, s["unity"])


def test_second_half_backwards_fails_motion_consistency():
    for seed in range(8):
        scene, text, frames = _one_object(seed + 100)
        back = frames.copy()
        back[16:] = frames[16:][::-1]
        ok = j.score_clip(frames, text, FPS)
        s = j.score_clip(back, text, FPS)
        assert ok["passed"]["motion_consistency"]
        assert not s["passed"]["motion_consistency"] and s["motion_consistency"] <= 0.6, (seed, text, s["motion_consistency"])
        assert s["passed"]["unity"], (seed, text)


def test_teleport_fails_jumps_only():
    for seed in range(8):
        scene, text, frames = _one_object(seed + 200, motions=w.BASIC_MOTIONS)
        obj = scene.objects[0]
        moved = replace(scene, objects=[replace(obj, x0=(obj.x0 + 0.4) % 1.0, y0=(obj.y0 + 0.3) % 1.0)])
        jumped = np.concatenate([frames[:17], shapes_render.render(moved, 33, 64, 64, FPS)[17:]])
        s = j.score_clip(jumped, text, FPS)
        co = s["detected"]["objects"][0]["coherence"]
        assert not s["passed"]["jumps"] and co["jumps"] == 1, (seed, text, co)
        assert co["jump_times_s"] == [pytest.approx(16.5 / FPS, abs=0.5 / FPS)], co
        assert s["jumps"] == pytest.approx(60.0 / (33 / FPS))
        assert s["passed"]["unity"] and s["passed"]["motion_consistency"], (seed, text, s["motion_consistency"])


def test_long_clip_counts_jumps_and_finds_reversals():
    """60 s: three teleports are three jumps (per minute: 3); a reversal every 10 s fails consistency."""
    scene, text, _ = _one_object(7, motions=("right",), num_frames=1)
    obj = scene.objects[0]
    parts = []
    for k in range(4):  # 4 segments of 15 s, each shifted vertically: 3 teleports
        seg = replace(scene, objects=[replace(obj, x0=(obj.x0 + obj.speed * 15.0 * k) % 1.0,
                                              y0=(obj.y0 + 0.3 * k) % 1.0)])
        parts.append(shapes_render.render(seg, 120 + (k == 3), 64, 64, FPS))
    clip = np.concatenate(parts)
    s = j.score_clip(clip, text, FPS)
    co = s["detected"]["objects"][0]["coherence"]
    assert co["jumps"] == 3 and s["jumps"] == pytest.approx(3 * 60.0 / (481 / FPS)), co
    assert co["jump_times_s"] == [pytest.approx(t, abs=0.2) for t in (14.94, 29.94, 44.94)], co
    assert s["passed"]["motion_consistency"] and s["passed"]["unity"]
    # ping-pong: forward 10 s, backward 10 s, ... (played back, so no teleports)
    fwd = shapes_render.render(scene, 81, 64, 64, FPS)
    pingpong = np.concatenate([fwd[:80] if k % 2 == 0 else fwd[80:0:-1] for k in range(6)] + [fwd[:1]])
    s = j.score_clip(pingpong, text, FPS)
    co = s["detected"]["objects"][0]["coherence"]
    assert not s["passed"]["motion_consistency"] and 0.4 <= s["motion_consistency"] <= 0.6, s["motion_consistency"]
    assert s["passed"]["jumps"], co
    by_win = co["consistency_by_window"]
    assert len(by_win) == 15 and min(by_win) < 0.5 and max(by_win) == 1.0, by_win


def test_bounce_that_stops_fails_window_consistency():
    rng = np.random.default_rng(41)
    prompt = "a red circle bouncing on a black background"
    scene = shapes_clips.scene_from_prompt(prompt, rng)
    frames = shapes_render.render(scene, 241, 64, 64, FPS)                  # 30 s of bouncing
    frames[121:] = frames[120]                                 # then it freezes mid-air
    s = j.score_clip(frames, prompt, FPS)
    assert not s["passed"]["motion_consistency"] and s["motion_consistency"] <= 0.6, s["motion_consistency"]


# --------------------------------------------------------------------------- parts vs references


def _reference_coherence(t, x, y, fps, motion, lag):
    """Plain loops: lag pairs + gap pairs, linear-mover jump limit, steps classified one by one."""
    pairs = [(a, b) for a in range(len(t)) for b in range(len(t)) if t[b] - t[a] == lag]
    pairs += [(k, k + 1) for k in range(len(t) - 1) if t[k + 1] - t[k] > lag]
    good = total = 0
    jumps = []
    for a, b in pairs:
        dt = (t[b] - t[a]) / fps
        dx = (x[b] - x[a] + 0.5) % 1.0 - 0.5
        dy = (y[b] - y[a] + 0.5) % 1.0 - 0.5
        if np.hypot(dx, dy) > 0.25 * dt + j.JUMP_MARGIN:
            jumps.append((t[a], t[b]))
            continue
        vx, vy = dx / dt, dy / dt
        if np.hypot(vx, vy) < j.STILL_SPEED:
            c = "still"
        elif abs(vx) >= abs(vy):
            c = "right" if vx > 0 else "left"
        else:
            c = "down" if vy > 0 else "up"
        total += 1
        good += c == motion
    events = 0
    end = -1
    for a, b in sorted(jumps):
        if a >= end:
            events += 1
        end = max(end, b)
    return good / total, events


@pytest.mark.parametrize("seed", range(6))
def test_coherence_matches_reference_loops(seed):
    rng = np.random.default_rng(seed)
    n = 60
    t = np.sort(rng.choice(80, n, replace=False))
    v = rng.uniform(-0.2, 0.2, 2)
    x = np.mod(0.3 + v[0] * t / FPS + rng.normal(0, 0.01, n), 1.0)
    y = np.mod(0.6 + v[1] * t / FPS + rng.normal(0, 0.01, n), 1.0)
    x[n // 2:] = np.mod(x[n // 2:] + 0.3, 1.0)           # a teleport
    if seed % 2:
        x[n // 4] = np.mod(x[n // 4] + 0.45, 1.0)         # a one-frame glitch
    motion = ("left", "right", "up", "down", "still")[seed % 5]
    got = j.coherence(t, x, y, FPS, 64, 64, motion, 80)
    ref_cons, ref_jumps = _reference_coherence(t, x, y, FPS, motion, 4)
    assert got["motion_consistency"] == pytest.approx(ref_cons)
    assert got["jumps"] == ref_jumps and ref_jumps >= 1


def test_unity_counts_blobs_per_colour_on_the_torus():
    red = w.ObjectSpec("circle", "red", "still", 0.25, 0.01, 0.5)       # split across the seam: one blob
    far = w.ObjectSpec("square", "red", "still", 0.2, 0.5, 0.5)
    blue = w.ObjectSpec("circle", "blue", "still", 0.25, 0.5, 0.1)
    one = shapes_render.render(w.SceneSpec([red, blue], "black"), 1, 64, 64, FPS)
    two = shapes_render.render(w.SceneSpec([red, far, blue], "black"), 1, 64, 64, FPS)
    r, b = list(w.COLORS).index("red"), list(w.COLORS).index("blue")
    for frames, n_red in ((one, 1), (two, 2)):
        blobs = j._Blobs(j.classify_pixels(frames)[0], 1)
        assert blobs.count[0, r] == n_red and blobs.count[0, b] == 1
    assert j.score_clip(one, "a red circle", FPS)["unity"] == 1.0
    assert j.score_clip(two, "a red circle", FPS)["unity"] == 0.0
    assert j.score_clip(two, "a red circle and a red square", FPS)["unity"] == 1.0


def test_max_travel_from_world_constants():
    assert j.max_travel("right", np.array(2.0), 64, 64)[0] == pytest.approx(0.5)
    assert j.max_travel(None, np.array(1.0), 64, 128)[0] == pytest.approx(0.5)   # 0.25 widths = 0.5 heights
    lim, axis = j.max_travel("orbit", np.array([0.5, 100.0]), 64, 64)
    assert axis == "xy" and lim[1] == pytest.approx(0.4) and lim[0] < 0.4      # at most the diameter
    assert j.max_travel("bounce", np.array(0.5), 64, 64)[1] == "x"


# --------------------------------------------------------------------------- pass rates


def test_wilson_interval_known_values():
    """Newcombe (1998, Stat. Med. 17:857, table I, method 3), and the closed forms at 0 and n."""
    for k, n, lo, hi in ((81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
                         (1, 29, 0.0061, 0.1718)):
        got = j.wilson_interval(k, n)
        assert got == pytest.approx((lo, hi), abs=6e-5), (k, n, got)
    z2 = 1.959963984540054 ** 2
    assert j.wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))
    assert j.wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2)), 1.0)
    for bad in ((-1, 5), (6, 5), (0, 0), (1.5, 4)):
        with pytest.raises(ValueError):
            j.wilson_interval(*bad)


def test_summarize_counts_and_intervals():
    per = [{c: 1.0 for c in j.ALL_CRITERIA} for _ in range(3)]
    for p in per:
        p["jumps"] = 0.0
        p["passed"] = {c: j.passes(c, p[c]) for c in j.ALL_CRITERIA}
    per[0]["jumps"], per[0]["passed"]["jumps"] = 15.0, False
    s = j.summarize(per)
    assert s["n"] == 3 and s["passed"]["jumps"] == 2 and s["passed"]["unity"] == 3
    assert s["mean"]["jumps"] == pytest.approx(5.0)
    assert s["pass_ci95"]["jumps"] == [round(100 * v, 1) for v in j.wilson_interval(2, 3)]
    assert j.passes("jumps", 1.0) and not j.passes("jumps", 1.01)
    assert j.passes("unity", 0.9) and not j.passes("unity", 0.89)
