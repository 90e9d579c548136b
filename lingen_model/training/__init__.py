"""Training: the trainer for the VAE and denoiser stages (:mod:`.trainer`), the data (:mod:`.data`:
shapes world or a folder of mp4s) and process-group set-up under torchrun (:mod:`.distributed`)."""
