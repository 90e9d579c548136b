"""The shapes world's language: captions with varied phrasing and synonyms (:func:`caption`), and
the prompt parser that reads those words back (:func:`parse_prompt`, used by the judge)."""
from __future__ import annotations

import re

import numpy as np

from lingen_model.shapes.world import ObjectSpec, PromptTarget, SceneSpec, TargetObject

# --------------------------------------------------------------------------- captions

_COLOR_SYNONYMS = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine"),
    "yellow": ("yellow", "golden", "lemon"),
    "green": ("green", "emerald"),
    "cyan": ("cyan", "aqua", "turquoise"),
    "blue": ("blue", "azure", "cobalt"),
    "purple": ("purple", "violet"),
    "white": ("white", "bright white"),
}
_SHAPE_SYNONYMS = {
    "circle": ("circle", "ball", "disc", "disk", "dot"),
    "square": ("square", "box", "block", "tile"),
    "triangle": ("triangle", "triangular shape"),
}
_BACKGROUND_SYNONYMS = {
    "black": ("black",),
    "gray": ("gray", "grey"),
    "dark blue": ("dark blue", "navy", "navy blue", "midnight blue"),
}
_MOTION_ING = {
    "left": ("moving left", "moving to the left", "drifting left", "sliding to the left", "heading left",
             "going leftward", "travelling leftwards", "gliding left", "moving from right to left",
             "crossing from right to left"),
    "right": ("moving right", "moving to the right", "drifting right", "sliding to the right", "heading right",
              "going rightward", "travelling rightwards", "gliding right", "moving from left to right",
              "crossing from left to right"),
    "up": ("moving up", "moving upward", "rising", "drifting upwards", "floating up", "climbing", "going up",
           "heading up", "moving from bottom to top", "ascending"),
    "down": ("moving down", "moving downward", "falling", "sinking", "drifting down", "dropping", "descending",
             "going down", "heading down", "moving from top to bottom"),
    "still": ("standing still", "staying still", "not moving", "sitting still", "resting", "motionless",
              "stationary", "at rest", "static", "holding still"),
    "bounce": ("bouncing", "bouncing up and down", "hopping", "bobbing up and down", "hopping up and down"),
    "orbit": ("orbiting", "circling around", "moving in a loop", "looping around", "orbiting the centre"),
}
_MOTION_3RD = {
    "left": ("moves left", "moves to the left", "drifts left", "slides to the left", "heads left",
             "glides leftward", "travels from right to left"),
    "right": ("moves right", "moves to the right", "drifts right", "slides to the right", "heads right",
              "glides rightward", "travels from left to right"),
    "up": ("moves up", "rises", "drifts upward", "floats up", "climbs", "goes up", "ascends"),
    "down": ("moves down", "falls", "sinks", "drifts downward", "drops", "goes down", "descends"),
    "still": ("stands still", "stays still", "does not move", "sits still", "rests", "stays motionless"),
    "bounce": ("bounces", "bounces up and down", "hops", "bobs up and down"),
    "orbit": ("orbits", "loops around", "goes around in a loop", "orbits the centre"),
}
_STILL_ADJ = ("static", "motionless", "stationary", "still")


def _pick(rng: np.random.Generator, options, canonical_prob: float = 0.0):
    """First option with probability ``canonical_prob``, else a uniform pick."""
    if canonical_prob and rng.random() < canonical_prob:
        return options[0]
    return options[int(rng.integers(len(options)))]


def article(word: str) -> str:
    """The indefinite article of an English word by its first letter: ``"an"`` before a vowel, else ``"a"``."""
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(rng: np.random.Generator, obj: ObjectSpec, allow_still_adj: bool) -> tuple[str, bool]:
    """'a small red ball' (and whether a still-adjective already carries the motion)."""
    words = []
    if obj.size < 0.23 and rng.random() < 0.3:
        words.append(_pick(rng, ("small", "little")))
    elif obj.size > 0.28 and rng.random() < 0.3:
        words.append(_pick(rng, ("big", "large")))
    used_adj = False
    if allow_still_adj and obj.motion == "still" and rng.random() < 0.3:
        words.append(_pick(rng, _STILL_ADJ))
        used_adj = True
    words.append(_pick(rng, _COLOR_SYNONYMS[obj.color], 0.6))
    words.append(_pick(rng, _SHAPE_SYNONYMS[obj.shape], 0.5))
    if rng.random() < 0.85:
        words.insert(0, article(words[0]))
    return " ".join(words), used_adj


def _motion_phrase(rng: np.random.Generator, obj: ObjectSpec, third_person: bool) -> str:
    phrase = _pick(rng, (_MOTION_3RD if third_person else _MOTION_ING)[obj.motion])
    if obj.motion == "orbit" and rng.random() < 0.5:
        phrase += " clockwise" if obj.clockwise else _pick(rng, (" counterclockwise", " anticlockwise"))
    return phrase


def _background_phrase(rng: np.random.Generator, scene: SceneSpec) -> str:
    name = _pick(rng, _BACKGROUND_SYNONYMS[scene.background], 0.6)
    if scene.texture and rng.random() < 0.7:
        name = _pick(rng, ("textured", "grainy", "mottled", "speckled")) + " " + name
    elif not scene.texture and rng.random() < 0.2:
        name = _pick(rng, ("plain", "solid", "flat")) + " " + name
    form = int(rng.integers(4))
    if form == 0:
        return f"on {article(name)} {name} background"
    if form == 1:
        return f"against {article(name)} {name} backdrop"
    if form == 2:
        return f"over {article(name)} {name} background"
    return f"on {name}"


def caption(scene: SceneSpec, rng: np.random.Generator) -> str:
    """A caption for ``scene`` with varied phrasing and synonyms.

    Examples: "a red circle moving to the left on a gray background",
    "crimson ball drifting left", "On navy, a static white box.",
    "a red circle and a blue square, both moving left". Objects are named in scene
    order; :func:`parse_prompt` recovers colours, shapes, motions and background.

    Raises:
        ValueError: more than two objects.
    """
    if len(scene.objects) > 2:
        raise ValueError(f"captions cover one or two objects, got {len(scene.objects)}")
    with_bg = rng.random() < 0.75
    bg = _background_phrase(rng, scene) if with_bg else ""
    lead_bg = with_bg and rng.random() < 0.25
    third = rng.random() < 0.3
    if len(scene.objects) == 1:
        obj = scene.objects[0]
        np_, adj = _noun_phrase(rng, obj, allow_still_adj=True)
        if adj:
            body = np_
        elif third:
            body = f"{np_} {_motion_phrase(rng, obj, True)}"
        else:
            body = f"{np_} {_motion_phrase(rng, obj, False)}"
    else:
        a, b = scene.objects
        if a.motion == b.motion and rng.random() < 0.6:
            np_a, _ = _noun_phrase(rng, a, allow_still_adj=False)
            np_b, _ = _noun_phrase(rng, b, allow_still_adj=False)
            both = "both " if rng.random() < 0.5 else ""
            body = f"{np_a} and {np_b}, {both}{_motion_phrase(rng, a, False)}"
        else:
            np_a, adj_a = _noun_phrase(rng, a, allow_still_adj=True)
            np_b, adj_b = _noun_phrase(rng, b, allow_still_adj=True)
            part_a = np_a if adj_a else f"{np_a} {_motion_phrase(rng, a, third)}"
            part_b = np_b if adj_b else f"{np_b} {_motion_phrase(rng, b, third)}"
            joiner = " while " if (third and not (adj_a or adj_b) and rng.random() < 0.5) else " and "
            body = part_a + joiner + part_b
    if not with_bg:
        text = body
    elif lead_bg:
        text = f"{bg[0].upper()}{bg[1:]}, {body}"
    else:
        text = f"{body} {bg}"
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.3:
        text += "."
    return text


# --------------------------------------------------------------------------- parsing

_COLOR_WORDS = {w: c for c, ws in _COLOR_SYNONYMS.items() for w in ws if " " not in w}
_COLOR_WORDS.update({"gold": "yellow", "violet": "purple", "magenta": "purple", "lime": "green"})
_SHAPE_WORDS = {
    **{w: "circle" for w in ("circle", "circles", "ball", "balls", "disc", "discs", "disk", "disks", "dot", "dots",
                             "sphere", "circular")},
    **{w: "square" for w in ("square", "squares", "box", "boxes", "block", "blocks", "tile", "tiles", "cube")},
    **{w: "triangle" for w in ("triangle", "triangles", "triangular")},
}
_BG_WORDS = {"black": "black", "gray": "gray", "grey": "gray", "darkblue": "dark blue"}
_TEXTURE_WORDS = {"textured": True, "grainy": True, "mottled": True, "speckled": True, "noisy": True,
                  "patterned": True, "plain": False, "solid": False, "flat": False, "uniform": False}
_DIRECTION_WORDS = {
    **{w: "left" for w in ("left", "leftward", "leftwards")},
    **{w: "right" for w in ("right", "rightward", "rightwards")},
    **{w: "up" for w in ("up", "upward", "upwards", "rising", "rises", "rise", "climbing", "climbs", "ascending",
                         "ascends", "top")},
    **{w: "down" for w in ("down", "downward", "downwards", "falling", "falls", "fall", "sinking", "sinks",
                           "dropping", "drops", "descending", "descends", "bottom")},
    **{w: "still" for w in ("still", "static", "stationary", "motionless", "resting", "rests", "rest",
                            "immobile", "unmoving")},
}
_SPECIAL_WORDS = {
    **{w: "bounce" for w in ("bouncing", "bounces", "bounce", "bouncy", "hopping", "hops", "hop", "bobbing",
                             "bobs")},
    **{w: "orbit" for w in ("orbiting", "orbits", "orbit", "circling", "looping", "loops", "loop")},
}
_BG_NOUNS = {"background", "backdrop", "bg", "canvas", "backgrounds"}
_NEGATIONS = {"not", "t", "never", "no"}
_MOVE_WORDS = {"move", "moves", "moving", "motion"}
_FILLERS = {"a", "an", "the", "one", "single", "small", "little", "tiny", "big", "large", "huge", "bright",
            "pure", "shiny", "solid", "plain"}


def _tokens(text: str) -> list[str]:
    text = text.lower()
    text = re.sub(r"\b(?:dark|navy|midnight)[\s-]+blue\b", " darkblue ", text)
    text = re.sub(r"\bnavy\b", " darkblue ", text)
    return re.findall(r"[a-z]+", text)


def parse_prompt(text: str) -> PromptTarget:
    """Read colours, shapes, motions and background out of a prompt by keyword.

    Synonyms of the captions are understood (ball/disc → circle, box/block → square,
    "drifting left" / "from right to left" → left, "falling" → down, "not moving" /
    "static" → still, "bouncing" → bounce, "orbiting" / "circling" → orbit, navy →
    dark blue, grey → gray); unknown words are ignored. Each colour word (or a shape word
    with no colour before it) starts an object; motion words after it, up to the next
    object, belong to it, the last direction word winning ("from right to left" → left),
    and a still-adjective right before an object ("a static red ball") belongs to that
    object. An object with no motion word takes the motion of its neighbour ("a red
    circle and a blue square moving left" → both left). "dark blue"/"navy" is the
    background unless a shape word follows (then it is the object colour blue); an object
    colour right before "background"/"backdrop" names no object.

    Args:
        text: the prompt.

    Returns:
        A :class:`PromptTarget`; attributes the prompt does not name are ``None``.

    Raises:
        ValueError: the prompt names no colour, shape or motion of the shapes world.
    """
    if not isinstance(text, str):
        raise ValueError(f"prompt must be a string, got {type(text).__name__}")
    toks = _tokens(text)
    n = len(toks)
    # Per-token motion reading (negated "move" words count as still).
    motion_at: dict[int, str] = {}
    for i, tok in enumerate(toks):
        if tok in _SPECIAL_WORDS:
            motion_at[i] = _SPECIAL_WORDS[tok]
        elif tok in _DIRECTION_WORDS:
            # "top"/"bottom" are directions only as "to (the) top/bottom"
            if tok in ("top", "bottom") and not (toks[i - 1:i] == ["to"] or toks[max(0, i - 2):i] == ["to", "the"]):
                continue
            motion_at[i] = _DIRECTION_WORDS[tok]
        elif tok in _MOVE_WORDS and i > 0 and (toks[i - 1] in _NEGATIONS or (i > 1 and toks[i - 2] in _NEGATIONS)):
            motion_at[i] = "still"
    # Objects: colour words start one; a shape word joins the open object when only a few
    # non-motion words separate them, otherwise starts its own.
    objects: list[dict] = []
    background, texture = None, None
    for i, tok in enumerate(toks):
        colour = _COLOR_WORDS.get(tok)
        if tok == "darkblue":
            nxt = [t for t in toks[i + 1:i + 4] if t not in _FILLERS]
            if nxt and nxt[0] in _SHAPE_WORDS:
                colour = "blue"
            elif background is None:
                background = "dark blue"
        elif tok in _BG_WORDS and background is None:
            background = _BG_WORDS[tok]
        if tok in _TEXTURE_WORDS and texture is None:
            # "solid"/"flat"/"plain" only speak of texture near a background word
            near = toks[i + 1:i + 3]
            if _TEXTURE_WORDS[tok] or any(t in _BG_WORDS or t in ("background", "backdrop") for t in near):
                texture = _TEXTURE_WORDS[tok]
        if colour is not None and any(t in _BG_NOUNS for t in toks[i + 1:i + 3]):
            colour = None  # "on a white background": a background colour outside the world
        if colour is not None:
            objects.append({"color": colour, "shape": None, "start": i})
        elif tok in _SHAPE_WORDS:
            shape = _SHAPE_WORDS[tok]
            if objects and objects[-1]["shape"] is None and i - objects[-1]["start"] <= 4 and not any(
                    j in motion_at or toks[j] in _COLOR_WORDS for j in range(objects[-1]["start"] + 1, i)):
                objects[-1]["shape"] = shape
            else:
                objects.append({"color": None, "shape": shape, "start": i})
    if not objects and not motion_at:
        raise ValueError(f"prompt names no colour, shape or motion of the shapes world: {text!r}")
    if not objects:
        objects.append({"color": None, "shape": None, "start": 0})
    # Motion words → objects.
    starts = [o["start"] for o in objects] + [n]
    found: list[list[tuple[int, str]]] = [[] for _ in objects]
    for i, mot in sorted(motion_at.items()):
        k = max([j for j in range(len(objects)) if starts[j] <= i] or [0])
        # a motion word followed only by fillers and then the next object's start modifies that object
        if k + 1 < len(objects) and all(toks[j] in _FILLERS for j in range(i + 1, starts[k + 1])):
            k += 1
        found[k].append((i, mot))
    motions: list[str | None] = []
    for items in found:
        special = [m for _, m in items if m in ("bounce", "orbit")]
        motions.append(special[0] if special else (items[-1][1] if items else None))
    for k in range(len(motions)):
        if motions[k] is None:
            later = [m for m in motions[k + 1:] if m is not None]
            earlier = [m for m in motions[:k] if m is not None]
            motions[k] = later[0] if later else (earlier[-1] if earlier else None)
    return PromptTarget(
        objects=[TargetObject(color=o["color"], shape=o["shape"], motion=m) for o, m in zip(objects, motions)],
        background=background, texture=texture)


