"""Inference: drawing and reading Monte Carlo samples.

The sampling package (:mod:`~dropkit.inference.sampling`: strategies, ``auto``, batch
replication, rerouting of torch's dropout), Monte Carlo dropout
(:mod:`~dropkit.inference.mc`), consistent networks
(:mod:`~dropkit.inference.consistent`), R-Drop's two passes
(:mod:`~dropkit.inference.rdrop`), uncertainty measures
(:mod:`~dropkit.inference.uncertainty`) and acquisition functions
(:mod:`~dropkit.inference.acquisition`). They use the tools and the primitives; the
application and the integrations use them.
"""
