"""The application: the ``dropkit`` command (:mod:`~dropkit.app.cli`), its experiments on
real data (:mod:`~dropkit.app.experiments`), their reference networks
(:mod:`~dropkit.app.models`) and the worked examples (:mod:`~dropkit.app.demo`). Nothing
in the library imports from here.
"""
