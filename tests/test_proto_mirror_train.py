"""recipes/lingen-tiny/proto_mirror_train.py (session 35 prototype, issue 14): training on each clip and its mirror
image with a mirror-consistency term. The loss is checked in float64 against the formula written out row by row with
an asymmetric toy velocity; an exactly mirror-equivariant velocity must show no gap; and one tiny training run must
encode the mirrored captions, log the gap, and leave the library's flow-matching loss and the trainer as they were."""
import json

import pytest
import torch
from typer.testing import CliRunner

from lingen_cli.app import app
from lingen_model.generation import flow
from lingen_model.training import trainer as trainer_mod
from support.recipes import load_recipe
from test_train import DATA, TINY_DENOISER, TINY_VAE, write_cfg

runner = CliRunner()


@pytest.fixture
def proto(monkeypatch):
    mod = load_recipe("proto_mirror_train")
    monkeypatch.setattr(trainer_mod.Trainer, "_loss", trainer_mod.Trainer._loss)  # restored after the test
    return mod


def _toy(ramp):
    """An asymmetric velocity: the latent scaled by a ramp across its width, plus the tokens' mean on each channel."""
    def f(z, t, c, m):
        tok = (c * m[..., None]).sum(1) / m.sum(1, keepdim=True)
        return z * ramp + tok[:, : z.shape[1], None, None, None] * (1 + t.reshape(-1, 1, 1, 1, 1))
    return f


def test_the_loss_is_the_paired_flow_matching_loss_plus_the_weighted_gap(proto):
    g = torch.Generator().manual_seed(0)
    b, shape = 2, (3, 4, 5, 6)
    x, eps = torch.randn(b, *shape, generator=g, dtype=torch.float64), torch.randn(b, *shape, generator=g, dtype=torch.float64)
    t = torch.rand(b, generator=g, dtype=torch.float64)
    c, mc = torch.randn(b, 7, 8, generator=g, dtype=torch.float64), torch.randn(b, 7, 8, generator=g, dtype=torch.float64)
    m = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    f = _toy(torch.linspace(-1.0, 2.0, 6, dtype=torch.float64))
    loss, stats = proto.mirror_pair_loss(f, x, c, m, mc, m, t, eps, weight=0.7)

    M = lambda a: a.flip(-1)  # noqa: E731
    z = (1 - t.reshape(-1, 1, 1, 1, 1)) * x + t.reshape(-1, 1, 1, 1, 1) * eps
    v1, v2, u = f(z, t, c, m), f(M(z), t, mc, m), eps - x
    fm = 0.5 * (((v1 - u) ** 2).mean() + ((v2 - M(u)) ** 2).mean())
    gap = ((v1 - M(v2)) ** 2).mean()
    torch.testing.assert_close(loss, fm + 0.7 * gap)
    assert stats["gap"] == pytest.approx(float(gap)) and stats["fm"] == pytest.approx(float(fm))
    assert float(gap) > 0.1  # the toy is not symmetric: the test can see a gap
    # the docstring's identity: the pair's loss is the frame average's loss plus a quarter of the gap
    torch.testing.assert_close(fm, (((v1 + M(v2)) / 2 - u) ** 2).mean() + gap / 4)
    with pytest.raises(ValueError, match="≥ 0"):
        proto.mirror_pair_loss(f, x, c, m, mc, m, t, eps, weight=-1.0)
    with pytest.raises(ValueError, match="one shape"):
        proto.mirror_pair_loss(f, x, c, m, mc[:, :5], m[:, :5], t, eps)


def test_the_windowed_term_covers_only_the_frames_at_low_noise(proto):
    """max_t < 1: the term is the mean squared gap over the latent frames with t ≤ max_t, written out frame by frame
    (per-frame times [B, T] and one time a clip [B]); none inside: no term."""
    g = torch.Generator().manual_seed(2)
    b, shape = 2, (3, 4, 5, 6)
    x, eps = torch.randn(b, *shape, generator=g, dtype=torch.float64), torch.randn(b, *shape, generator=g, dtype=torch.float64)
    c, mc = torch.randn(b, 7, 8, generator=g, dtype=torch.float64), torch.randn(b, 7, 8, generator=g, dtype=torch.float64)
    m = torch.ones(b, 7, dtype=torch.bool)
    ramp = torch.linspace(-1.0, 2.0, 6, dtype=torch.float64)

    def f(z, t, cc, mm):  # asymmetric, and per-frame times enter frame by frame
        tok = (cc * mm[..., None]).sum(1) / mm.sum(1, keepdim=True)
        tt = t.reshape(t.shape[0], 1, -1, 1, 1) if t.ndim == 2 else t.reshape(-1, 1, 1, 1, 1)
        return z * ramp + tok[:, : z.shape[1], None, None, None] * (1 + tt)

    t = torch.tensor([[0.2, 0.9, 0.5, 0.95], [0.99, 0.91, 0.3, 0.85]], dtype=torch.float64)
    loss, stats = proto.mirror_pair_loss(f, x, c, m, mc, m, t, eps, weight=2.0, max_t=0.84)
    tt = t.reshape(b, 1, 4, 1, 1)
    z = (1 - tt) * x + tt * eps
    v1, v2 = f(z, t, c, m), f(z.flip(-1), t, mc, m)
    fm = 0.5 * (((v1 - (eps - x)) ** 2).mean() + ((v2 - (eps - x).flip(-1)) ** 2).mean())
    frames = [(0, 0), (0, 2), (1, 2)]  # (row, latent frame) with t ≤ 0.84
    term = torch.stack([((v1[i, :, k] - v2[i, :, k].flip(-1)) ** 2).mean() for i, k in frames]).mean()
    torch.testing.assert_close(loss, fm + 2.0 * term)
    assert stats["gap_window"] == pytest.approx(float(term))
    assert stats["gap"] == pytest.approx(float(((v1 - v2.flip(-1)) ** 2).mean())) != pytest.approx(float(term))
    # one time a clip: the rows above max_t drop out; none inside: the loss is the pair's flow matching alone
    t1 = torch.tensor([0.5, 0.9], dtype=torch.float64)
    loss1, s1 = proto.mirror_pair_loss(f, x, c, m, mc, m, t1, eps, weight=1.0, max_t=0.84)
    z1 = (1 - t1.reshape(-1, 1, 1, 1, 1)) * x + t1.reshape(-1, 1, 1, 1, 1) * eps
    w1, w2 = f(z1, t1, c, m), f(z1.flip(-1), t1, mc, m)
    assert s1["gap_window"] == pytest.approx(float(((w1[0] - w2[0].flip(-1)) ** 2).mean()))
    loss0, s0 = proto.mirror_pair_loss(f, x, c, m, mc, m, torch.full((2,), 0.9, dtype=torch.float64), eps,
                                       weight=1.0, max_t=0.84)
    assert s0["gap_window"] == 0.0 and float(loss0) == pytest.approx(s0["fm"]) and s0["gap"] > 0.1
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="max_t"):
            proto.mirror_pair_loss(f, x, c, m, mc, m, t, eps, max_t=bad)
    with pytest.raises(ValueError, match="MIRROR_MAX_T"):
        proto.install(max_t=0.0)


def test_a_mirror_equivariant_velocity_has_no_gap(proto):
    g = torch.Generator().manual_seed(1)
    x, eps = torch.randn(1, 2, 3, 4, 5, generator=g), torch.randn(1, 2, 3, 4, 5, generator=g)
    c, m = torch.randn(1, 3, 4, generator=g), torch.ones(1, 3, dtype=torch.bool)
    ramp = torch.tensor([1.0, -2.0, 3.0, -2.0, 1.0])  # a palindrome: the toy commutes with the mirror
    _, stats = proto.mirror_pair_loss(_toy(ramp), x, c, m, c, m, torch.rand(1, generator=g), eps)
    assert stats["gap"] == 0.0


def test_the_symmetric_encoder_is_mirror_equivariant(proto):
    from lingen_model.models.vae import CausalVideoVAE, VAEConfig

    torch.manual_seed(0)
    vae = CausalVideoVAE(VAEConfig(**TINY_VAE)).eval()
    sym = proto.SymmetricEncoder(vae)
    x = torch.rand(2, 3, 5, 16, 24) * 2 - 1
    z = sym.encode(x)
    torch.testing.assert_close(z, (vae.encode(x) + vae.encode(x.flip(-1)).flip(-1)) / 2)
    torch.testing.assert_close(sym.encode(x.flip(-1)), z.flip(-1))  # enc_s(M x) = M enc_s(x)
    assert float((vae.encode(x.flip(-1)) - vae.encode(x).flip(-1)).abs().max()) > 1e-3  # the VAE itself is not
    assert sym.latent_channels == vae.latent_channels  # every other attribute is the VAE's
    with pytest.raises(ValueError, match="MIRROR_VAE"):
        proto.install(vae="mirrored")


@pytest.mark.parametrize("vae", ["plain", "symmetric"])
def test_one_training_run_pairs_the_captions_logs_the_gap_and_unpatches(proto, tmp_path, monkeypatch, vae):
    vae_cfg = write_cfg(tmp_path / "vae.yaml", stage="vae", run_dir=str(tmp_path / "vae"), steps=1, batch_size=1,
                        data=DATA, vae=TINY_VAE)
    assert runner.invoke(app, ["train", str(vae_cfg), "-q"]).exit_code == 0
    encoded = []
    encode = proto._PairedEncoder.encode

    def spy(self, captions):
        encoded.append(list(captions))
        out = encode(self, captions)
        ref, ref_mask = self._encoder.encode([proto.mirror_prompt(c) for c in captions])  # the mirrors, alone
        for row in range(len(captions)):  # the paired call pads to both lists' longest: compare the real tokens
            n = int(ref_mask[row].sum())
            assert int(self.mirrored[1][row].sum()) == n
            torch.testing.assert_close(self.mirrored[0][row, :n], ref[row, :n])
        return out

    monkeypatch.setattr(proto._PairedEncoder, "encode", spy)
    sym_calls = []
    sym_encode = proto.SymmetricEncoder.encode
    monkeypatch.setattr(proto.SymmetricEncoder, "encode", lambda self, v: sym_calls.append(1) or sym_encode(self, v))
    proto.install(weight=1.0, vae=vae)
    run = tmp_path / "den"
    cfg = write_cfg(tmp_path / "den.yaml", stage="denoiser", run_dir=str(run), vae_checkpoint=str(tmp_path / "vae"),
                    steps=3, warmup_steps=0, batch_size=2, log_every=1, caption_dropout=0.0, data=DATA,
                    denoiser=TINY_DENOISER)
    r = runner.invoke(app, ["train", str(cfg), "-q"])
    assert r.exit_code == 0, r.output
    assert flow.flow_matching_loss is proto._FLOW_MATCHING_LOSS  # the library's loss is back after each step
    assert len(encoded) == 3 and all(len(caps) == 2 for caps in encoded)
    assert len(sym_calls) == (3 if vae == "symmetric" else 0)  # the step's latents come from the chosen encoder
    gaps = [json.loads(line) for line in (run / "mirror_gap.jsonl").read_text().splitlines()]
    assert [g["step"] for g in gaps] == [1, 2, 3] and all(g["fm"] > 0 for g in gaps)
    assert gaps[0]["gap"] == 0 < gaps[-1]["gap"]  # the zero-initialised output layer is symmetric, then it is not
    hist = json.loads((run / "train_state.json").read_text())["history"]
    for h, g in zip(hist, gaps):  # the logged loss is the paired loss plus the gap (λ = 1)
        assert h["loss"] == pytest.approx(g["fm"] + g["gap"], rel=1e-4)

    bad = write_cfg(tmp_path / "bad.yaml", stage="denoiser", run_dir=str(tmp_path / "bad"), steps=1, batch_size=1,
                    vae_checkpoint=str(tmp_path / "vae"), contrast_weight=0.1, data=DATA, denoiser=TINY_DENOISER)
    r = runner.invoke(app, ["train", str(bad), "-q"])
    assert r.exit_code != 0 and "proto_mirror_train covers" in r.output
