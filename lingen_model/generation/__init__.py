"""Generation: the data path text → latents → denoise → decode in one file (:mod:`.pipeline`), the
rectified-flow sampler and training loss (:mod:`.flow`), and checkpoint directories (:mod:`.checkpoint`)."""
