"""The networks: the MATE denoiser and its DiT twin (:mod:`.denoiser`, :mod:`.layers`, :mod:`.config`),
the MA-branch's bidirectional Mamba2 (:mod:`.mamba2`) and its SSD scan (:mod:`.ssd`) over the Rotary
Major Scan (:mod:`.scan_order`), the TE-branch's temporal Swin attention (:mod:`.tesa`), the causal
video VAE (:mod:`.vae`) and the text encoders (:mod:`.text_encoder`). See docs/design.md."""
