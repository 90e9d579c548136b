"""Training: the trainer for the VAE and denoiser stages (:mod:`.trainer`), the training YAML's schema
(:mod:`.config`), the data (:mod:`.data`: shapes world, a folder of mp4s, or preprocessed shards read by
:mod:`.shard_data`; :mod:`.data_stream` splits one global batch across ranks; :mod:`.preprocess` writes
the shards), and the distributed side under torchrun: process groups (:mod:`.distributed`), FSDP2
sharding and activation checkpointing (:mod:`.parallel`), distributed checkpoints (:mod:`.dist_checkpoint`)."""
