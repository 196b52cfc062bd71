"""Run a ``dropkit`` command and die like a SIGKILL at one write point.

    python tests/fault_worker.py N COUNT_FILE dropkit-args...

Every file a run folder gets goes through one rename (``os.replace`` in
:mod:`dropkit.app.experiments.io`). With N >= 1 the process ends with ``os._exit`` just before
the N-th rename: the new file's temporary copy is left on disk, nothing is cleaned up,
no ``finally`` runs, as after a kill. With N = 0 it runs to the end and writes the
number of renames to COUNT_FILE, so a test knows every point there is to kill at.
"""

import os
import sys
import types

from dropkit.app.cli import main
from dropkit.app.experiments import io


def _run() -> int:
    stop, count_file, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    real = os.replace
    done = 0

    def replace(src, dst) -> None:
        nonlocal done
        done += 1
        if done == stop:
            os._exit(137)  # as SIGKILL: no cleanup, no flush, the temporary file stays
        real(src, dst)

    # the io module's own `os`, so only the run folder's renames count
    io.os = types.SimpleNamespace(**{**vars(os), "replace": replace})
    code = main(argv)
    with open(count_file, "w") as f:
        f.write(str(done))
    return code


if __name__ == "__main__":
    sys.exit(_run())
