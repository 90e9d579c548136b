"""Worker for test_train_state.py: train the tiny denoiser a few steps, alone or under torchrun.

    python dp_worker.py RUN_DIR OUT.pt VAE_DIR                      # 1 process, batch of 2 clips
    torchrun --nproc-per-node 2 dp_worker.py RUN_DIR OUT.pt VAE_DIR  # 2 ranks, 1 clip each

Every run sees the same global batch (2 fixed clips; rank r takes clip r) and a deterministic
flow-matching loss in float64 (t = 0.7, noise 0, so z_t = 0.3·x and the target is −x: no random draw that
would differ between a rank and the single process). After each optimiser step the weights of every
rank are gathered; rank 0 writes ``{"world", "initial", "steps": [[state of rank r, ...], ...]}``
to OUT.pt (tensors only, readable with ``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

STEPS = 3
GLOBAL_BATCH = 2
CONTEXT_LEN = 77  # MiniLM's maximum caption length


def _full(t: torch.Tensor) -> torch.Tensor:
    """A plain CPU copy of a (possibly sharded DTensor) state-dict tensor."""
    t = t.full_tensor() if hasattr(t, "full_tensor") else t
    return t.detach().cpu().clone()


def main(run_dir: str, out: str, vae_dir: str) -> None:
    import lingen_model.training.trainer as train_mod
    from lingen_model.training.data import DataConfig, batches
    from lingen_model.training.distributed import init_distributed

    rank, world = init_distributed()
    data = {"source": "shapes", "height": 32, "width": 32, "fps": 8, "frames": 5, "still_prob": 0.0}
    cfg_path = Path(run_dir + ".yaml")
    if rank == 0:
        cfg_path.write_text(yaml.safe_dump({
            "stage": "denoiser", "run_dir": run_dir, "steps": 1, "batch_size": GLOBAL_BATCH // world,
            "lr": 0.1, "warmup_steps": 100,  # lr = 0.1·(step+1)/100: independent of the total step count
            "log_every": 1, "save_every_steps": 1000, "data": data, "vae_checkpoint": vae_dir, "caption_dropout": 0.0,
            "denoiser": {"size": "tiny", "mixer": "mate", "overrides": {
                "width": 32, "depth": 2, "num_heads": 2, "headdim": 16, "d_state": 8, "ffn_dim": 64,
                "chunk_size": 16, "window": [2, 2, 2]}},
        }))
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    from lingen_model.training.config import load_train_config

    cfg = load_train_config(cfg_path)

    video, captions = next(batches(DataConfig(**data), GLOBAL_BATCH, seed=5))
    per = GLOBAL_BATCH // world
    mine = (video[rank * per:(rank + 1) * per], captions[rank * per:(rank + 1) * per])

    def fixed_batches(_cfg, _batch_size, seed):  # the trainer's data source: always this rank's share
        while True:
            yield mine

    def deterministic_loss(self, video, captions, gen):
        with torch.no_grad():  # clip by clip, captions padded to one length: the same inputs in every run
            latents = torch.cat([self.vae.encode(v[None]) for v in video]).double()
            ctx = torch.zeros(len(captions), CONTEXT_LEN, self.text_encoder.dim, dtype=torch.float64)
            mask = torch.zeros(len(captions), CONTEXT_LEN, dtype=torch.bool)
            for i, c in enumerate(captions):
                tokens, m = self.text_encoder.encode([c])
                ctx[i, :tokens.shape[1]], mask[i, :m.shape[1]] = tokens[0].double(), m[0]
        t = torch.full((latents.shape[0],), 0.7, dtype=torch.float64)
        v = self.model(0.3 * latents, t, ctx, mask)
        return (v + latents).pow(2).mean(), {}

    train_mod.batches = fixed_batches
    train_mod.Trainer._loss = deterministic_loss
    trainer = train_mod.Trainer(cfg)
    # float64 weights (the optimiser keeps the same Parameter objects): the single process and the ranks
    # sum the same gradients in different orders, and float64 keeps that rounding far below any update
    trainer.model.double()

    def gather() -> list[dict[str, torch.Tensor]]:
        state = {k: _full(v) for k, v in trainer.model.state_dict().items()}
        if world == 1:
            return [state]
        import torch.distributed as dist

        everyone: list = [None] * world
        dist.all_gather_object(everyone, state)
        return everyone

    initial = gather()[0]
    steps = []
    for k in range(1, STEPS + 1):
        trainer.cfg["steps"] = k
        trainer.train()
        steps.append(gather())
    if rank == 0:
        torch.save({"world": world, "initial": initial, "steps": steps}, out)
    if world > 1:
        from lingen_model.training.distributed import finish_distributed

        finish_distributed()


if __name__ == "__main__":
    main(*sys.argv[1:4])
