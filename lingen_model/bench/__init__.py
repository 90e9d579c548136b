"""Cost of the denoiser: the analytic FLOP model (:mod:`.flops`), one benchmark cell measured in a worker
process (:mod:`.measure`), and fits, crossovers and tables of the results (:mod:`.report`); per-rank time
and memory under context parallelism (:mod:`.context_parallel`, with the live-tensor meter :mod:`.mem_meter`)."""
