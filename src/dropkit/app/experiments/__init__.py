"""Experiments that show what dropout does, on real data: ``dropkit compare`` and friends.

Needs the ``experiments`` extra (mlxtend, scikit-learn, matplotlib, tqdm):
``pip install 'dropkit[experiments]'``; ``make demo`` installs it.
"""
