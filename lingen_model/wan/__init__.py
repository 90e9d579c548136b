"""Wan2.1 → LinGen: a Wan-compatible denoiser built from our TESA and MA-branch (:mod:`.denoiser`),
``lingen convert`` (:mod:`.convert`), the Wan VAE behind our interface with a streaming decode
(:mod:`.vae`) and the distillation loss (:mod:`.distill`). See docs/wan.md."""
