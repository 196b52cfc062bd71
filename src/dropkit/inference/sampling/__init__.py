"""How Monte Carlo samples are drawn: the one sampling package behind ``mc_predict``,
``rdrop_forward``, ``score_pool`` and the integrations.

- :mod:`~dropkit.inference.sampling.strategies`: ``vmap`` over samples, the batch tiled, a loop;
  chunks, halved while the device runs out of memory.
- :mod:`~dropkit.inference.sampling.auto`: ``"auto"``, the strategies timed once per model and input
  signature, the fastest kept.
- :mod:`~dropkit.inference.sampling.batch`: where replicating the batch gives independent samples,
  and where a model's rows depend on each other (observed).
- :mod:`~dropkit.inference.sampling.reroute`: torch's dropout calls sent to dropkit's draws, SDPA in
  its math form where it drops.
- :mod:`~dropkit.inference.sampling.output`: which tensor of an output is sampled.
- :mod:`~dropkit.inference.sampling.failures`: a failure named by its module; out of memory told
  apart.
"""
