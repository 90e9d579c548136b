"""Preset files: validation errors name the file and entry; auto picks from the device."""
import pytest
import yaml

from lingen_model.errors import InputError
from lingen_model.geometry import frames_for_length, parse_length, parse_resolution
from lingen_model.presets import load_sizes, load_tiers, pick_tier, presets_dir

GOOD = {"device": "cpu", "min_memory_gb": 0, "dtype": "float32", "text_encoder_offload": False,
        "vae_chunk_frames": 4, "max_params_m": 60, "max_length_s": 120}


def write(tmp_path, data):
    p = tmp_path / "tiers.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_shipped_presets_load():
    tiers = load_tiers()
    assert {"cpu", "8gb", "24gb", "80gb"} <= set(tiers)
    assert (presets_dir() / "models.yaml").is_file()
    assert "minute" in load_sizes()["lengths"]


@pytest.mark.parametrize("entry,needle", [
    ({**GOOD, "colour": 1}, "unknown key(s): colour"),
    ({k: v for k, v in GOOD.items() if k != "dtype"}, "missing key(s): dtype"),
    ({**GOOD, "dtype": "float8"}, "dtype must be one of"),
    ({**GOOD, "vae_chunk_frames": "four"}, "vae_chunk_frames must be an integer"),
    ({**GOOD, "max_length_s": -1}, "max_length_s must be >= 0"),
])
def test_bad_tier_entries_are_named(tmp_path, entry, needle):
    path = write(tmp_path, {"mytier": entry})
    with pytest.raises(InputError) as e:
        load_tiers(path)
    assert needle in str(e.value) and "mytier" in str(e.value) and path in str(e.value)


def test_auto_picks_cpu_without_gpu_and_unknown_name_fails():
    import torch

    if not torch.cuda.is_available():
        assert pick_tier("auto").name == "cpu"
    with pytest.raises(InputError, match="unknown preset 'potato'"):
        pick_tier("potato")


@pytest.mark.parametrize("text,fps,frames", [("4s", 8, 33), ("60s", 8, 481), ("97f", 16, 97), ("1m", 8, 481),
                                             ("5s", 16, 81), ("2.5s", 4, 9), ("98f", 16, 97)])
def test_lengths_map_to_valid_frame_counts(text, fps, frames):
    assert frames_for_length(text, fps)[0] == frames


def test_resolutions_and_bad_values():
    assert parse_resolution("512") == (512, 512)
    assert parse_resolution("512x288") == (512, 288)
    assert parse_resolution("768p", native=(16, 9)) == (1360, 768)
    for bad in ("0", "abc", "512x", "100"):
        with pytest.raises(InputError):
            parse_resolution(bad)
    for bad in ("0s", "-1s", "x", "2.5f", "nan"):
        with pytest.raises(InputError):
            parse_length(bad)
