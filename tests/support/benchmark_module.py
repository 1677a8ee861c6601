"""Load a script from benchmarks/ (not a package) as a module for a test."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@contextlib.contextmanager
def benchmark_module(filename: str, name: str):
    """benchmarks/<filename> imported as `name`, registered in sys.modules while the block runs
    (so that worker processes can unpickle what refers to it), removed afterwards."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]
