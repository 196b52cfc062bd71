"""Integrations with the frameworks people train with, each imported only on request.

- :mod:`dropkit.integrations.lightning`: ``DropoutSchedule`` and ``MCDropoutPrediction``
  callbacks for PyTorch Lightning (``pip install 'dropkit[lightning]'``).
- :mod:`dropkit.integrations.transformers`: ``DropoutScheduleCallback`` for the Hugging
  Face ``Trainer`` (``pip install 'dropkit[transformers]'``).

``import dropkit`` imports neither framework; importing an integration without its
framework raises an ImportError that names the extra to install.
"""
