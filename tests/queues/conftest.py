from __future__ import annotations

import sys
from pathlib import Path

# The suite runs with --import-mode=importlib, which puts no test folder on sys.path: make the
# fake call layer (queue_sim.py, beside this file) importable by the test modules.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
