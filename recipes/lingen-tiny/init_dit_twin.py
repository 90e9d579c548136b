"""Start the DiT twin's long-clip run from the same weights as LinGen's (issue 14, item 3).

The twin's full-attention mixer has exactly the tensors of MATE's TE-branch (qkv, q/k RMS norm,
proj), so it inherits them; the MA-branch (bidirectional Mamba2) is dropped; every other tensor
(patch embedding, adaLN, cross-attention, FFN, output) is copied. The run directory gets the
same single-file resumable state as ``recipes/lingen-tiny/state`` (step, history, no Adam
moments: the trainer re-warms the learning rate), so both models start the long-clip stage
from step 13,500 with the same knowledge and then get the same wall-clock budget.

    python recipes/lingen-tiny/init_dit_twin.py recipes/lingen-tiny/state \
        lingen_model/weights/lingen-tiny/denoiser.safetensors runs/lingen-tiny-dit-long

(the second argument is the EMA weights, which the committed state leaves out because they are
the shipped ``denoiser.safetensors``).
"""
import json
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from lingen_model.models.denoiser import build_denoiser


def to_twin(weights: dict) -> dict:
    """MATE state dict → DiT-twin state dict (``mixer.te.*`` → ``mixer.*``, ``mixer.ma.*`` dropped)."""
    out = {k.replace(".mixer.te.", ".mixer."): v for k, v in weights.items() if ".mixer.ma." not in k}
    expected = build_denoiser("tiny", "attention").state_dict()
    missing, extra = set(expected) - set(out), set(out) - set(expected)
    bad = [k for k in expected if k in out and out[k].shape != expected[k].shape]
    if missing or extra or bad:
        raise SystemExit(f"weights do not map onto the tiny DiT twin: missing {sorted(missing)[:3]}, "
                         f"extra {sorted(extra)[:3]}, shape {bad[:3]}")
    return {k: v.contiguous() for k, v in out.items()}


def main(src: str, ema_weights: str, dst: str) -> None:
    src_dir, dst_dir = Path(src), Path(dst)
    dst_dir.mkdir(parents=True, exist_ok=True)
    raw = load_file(str(src_dir / "denoiser.safetensors"))
    ema = load_file(ema_weights)
    save_file(to_twin(raw), str(dst_dir / "denoiser.safetensors"))
    save_file(to_twin(ema), str(dst_dir / "denoiser_ema.safetensors"))
    state = json.loads((src_dir / "train_state.json").read_text())
    state["config"]["denoiser"] = {"size": "tiny", "mixer": "attention"}
    state["config"]["run_dir"] = str(dst_dir)
    (dst_dir / "train_state.json").write_text(json.dumps(state))
    print(f"wrote {dst_dir} (DiT twin at step {state['step']}, from {src_dir})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
