"""The one strict config loader (lingen_model.schema.from_dict) and the configs that use it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

import pytest

from lingen_model.errors import InputError
from lingen_model.schema import from_dict


@dataclass
class Inner:
    n: int = field(default=1, metadata={"ge": 1})


@dataclass
class Cfg:
    name: str
    count: int = field(default=2, metadata={"ge": 1, "le": 10})
    rate: float = field(default=0.5, metadata={"gt": 0})
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1,)
    pair: tuple[int, float] = (1, 2.0)
    maybe: Optional[int] = None
    either: Union[int, str] = 0
    inner: Inner = field(default_factory=Inner)
    table: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.name == "forbidden":
            raise ValueError("name 'forbidden' is taken")


def test_good_dict_builds_with_conversions():
    c = from_dict(Cfg, {"name": "x", "count": 3, "rate": 2, "flag": True, "mode": "b", "sizes": [4, 5],
                        "pair": [7, 3], "maybe": None, "either": "s", "inner": {"n": 4}, "table": {"k": 1}}, "f.yaml")
    assert c == Cfg(name="x", count=3, rate=2.0, flag=True, mode="b", sizes=(4, 5), pair=(7, 3.0), maybe=None,
                    either="s", inner=Inner(4), table={"k": 1.0})
    assert isinstance(c.rate, float) and isinstance(c.sizes, tuple) and isinstance(c.pair[1], float)
    assert from_dict(Cfg, {"name": "y"}, "f.yaml") == Cfg(name="y")  # defaults fill the rest


@pytest.mark.parametrize("data,needle", [
    ({"name": "x", "colour": 1}, "f.yaml: unknown key(s): colour"),
    ({}, "f.yaml: missing key(s): name"),
    ({"name": 3}, "f.yaml: name must be a string, got int 3"),
    ({"name": "x", "count": True}, "count must be an integer, got bool True"),
    ({"name": "x", "count": 2.7}, "count must be an integer, got float 2.7"),
    ({"name": "x", "count": "5"}, "count must be an integer, got str '5'"),
    ({"name": "x", "count": 0}, "count must be >= 1, got 0"),
    ({"name": "x", "count": 11}, "count must be <= 10, got 11"),
    ({"name": "x", "rate": "fast"}, "rate must be a number, got str 'fast'"),
    ({"name": "x", "rate": float("nan")}, "rate must be a finite number"),
    ({"name": "x", "rate": 0}, "rate must be > 0, got 0"),
    ({"name": "x", "flag": 1}, "flag must be true or false, got int 1"),
    ({"name": "x", "flag": "yes"}, "flag must be true or false"),
    ({"name": "x", "mode": "c"}, "mode must be one of 'a', 'b', got 'c'"),
    ({"name": "x", "sizes": 3}, "sizes must be a list"),
    ({"name": "x", "sizes": [1, "2"]}, "sizes[1] must be an integer"),
    ({"name": "x", "pair": [1]}, "pair must be a list of 2 values, got 1"),
    ({"name": "x", "either": 1.5}, "either must be one of the types int, str, got float 1.5"),
    ({"name": "x", "inner": {"n": 0}}, "f.yaml: inner: n must be >= 1, got 0"),
    ({"name": "x", "inner": {"m": 1}}, "f.yaml: inner: unknown key(s): m"),
    ({"name": "x", "table": {"k": "v"}}, "table.k must be a number"),
    ({"name": "forbidden"}, "f.yaml: name 'forbidden' is taken"),
    ([1, 2], "f.yaml: expected a mapping of keys, got list"),
])
def test_bad_input_is_one_line_naming_file_and_key(data, needle):
    with pytest.raises(InputError) as e:
        from_dict(Cfg, data, "f.yaml")
    msg = str(e.value)
    assert needle in msg and "\n" not in msg, msg


def test_require_all_refuses_defaults():
    with pytest.raises(InputError, match="missing key"):
        from_dict(Inner, {}, "saved.json", require_all=True)
    assert from_dict(Inner, {"n": 2}, "saved.json", require_all=True) == Inner(2)


def test_denoiser_and_vae_configs_are_strict():
    from lingen_model.models.config import DenoiserConfig
    from lingen_model.models.vae import VAEConfig

    d = DenoiserConfig().to_dict()
    assert DenoiserConfig.from_dict(d) == DenoiserConfig()
    for key, bad, needle in (("depth", 1_000_000, "depth must be <= 512"), ("width", 999999936, "width must be <="),
                             ("depth", "8", "depth must be an integer"), ("qk_norm", 1, "qk_norm must be true or false"),
                             ("mixer", "rnn", "mixer must be one of"), ("window", [4, 4], "window must be a list of 3")):
        with pytest.raises(InputError, match=needle):
            DenoiserConfig.from_dict({**d, key: bad})
    v = VAEConfig().to_dict()
    assert VAEConfig.from_dict(v) == VAEConfig()
    with pytest.raises(InputError, match="missing key"):
        VAEConfig.from_dict({k: x for k, x in v.items() if k != "latent_channels"})
    with pytest.raises(InputError, match="latent_channels must be an integer"):
        VAEConfig.from_dict({**v, "latent_channels": 8.5})


def test_train_yaml_is_strict(tmp_path):
    import yaml

    from lingen_model.training.config import TrainConfig, load_train_config

    def load(**kw):
        p = tmp_path / "t.yaml"
        p.write_text(yaml.safe_dump({"stage": "vae", "run_dir": "r", **kw}))
        return load_train_config(p)

    cfg = load()
    assert cfg["lr"] == TrainConfig.__dataclass_fields__["lr"].default and cfg["data"].source == "shapes"
    for kw, needle in (({"lr": "fast"}, "lr must be a number"), ({"save_every_steps": 0}, "save_every_steps must be >= 1"),
                       ({"log_every": 0}, "log_every must be >= 1"), ({"ema_decay": 5}, "ema_decay must be <= 1"),
                       ({"num_threads": -1}, "num_threads must be >= 1"), ({"vae": {"colour": 1}}, "vae: unknown key(s): colour"),
                       ({"data": {"height": 0}}, "data: height must be >= 8"), ({"steps": 2.5}, "steps must be an integer")):
        with pytest.raises(InputError) as e:
            load(**kw)
        assert needle in str(e.value), str(e.value)
    assert {f.name for f in dataclasses.fields(TrainConfig)} >= {"stage", "run_dir", "data", "export"}
