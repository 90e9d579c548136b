"""recipes/lingen-tiny/vae_roundtrip_coherence.py: the world's own render of each prompt, scored before and after the
shipped VAE's round trip. ``--prompts`` (session 38) must read the prompts from a file, in order, and an unreadable
file must end in a one-line usage error."""
import sys

import pytest

from support.recipes import load_recipe


def test_prompts_from_a_file_are_rendered_in_order(tmp_path, monkeypatch, capsys):
    mod = load_recipe("vae_roundtrip_coherence")
    f = tmp_path / "p.txt"
    f.write_text("a green circle moving left on a gray background\n\na white square moving up on a black background\n")
    monkeypatch.setattr(sys, "argv", ["x", "--length", "1s", "--prompts", str(f), "--limit", "5", "--seed-base", "7"])
    mod.main()
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(" | ")[0] for ln in lines] == ["a green circle moving left on a gray background"] * 2 + [
        "a white square moving up on a black background"] * 2
    assert [ln.split(" | ")[1].split(":")[0] for ln in lines] == ["render", "vae round trip"] * 2
    assert all("unity 1.000" in ln for ln in lines[::2])  # the world's own render passes


def test_an_unreadable_prompt_file_is_a_usage_error(tmp_path, monkeypatch, capsys):
    mod = load_recipe("vae_roundtrip_coherence")
    monkeypatch.setattr(sys, "argv", ["x", "--prompts", str(tmp_path / "missing.txt")])
    with pytest.raises(SystemExit) as e:
        mod.main()
    assert e.value.code == 2 and "cannot read --prompts" in capsys.readouterr().err
