"""Model-level tools: what a model holds and what to do with it.

The registry of dropout sites (:mod:`~dropkit.tools.sites`), rate control
(:mod:`~dropkit.tools.rates`, :mod:`~dropkit.tools.schedules`,
:mod:`~dropkit.tools.scheduler`), the seed plan (:mod:`~dropkit.tools.seed_plan`),
patching foreign models (:mod:`~dropkit.tools.patch`) and the pitfall diagnostics
(:mod:`~dropkit.tools.diagnostics`). They use the primitives (``dropkit.mask``,
``dropkit.functional``, ``dropkit.nn``, ``dropkit.seeded``) and are used by inference.
"""
