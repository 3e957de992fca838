"""The process helpers of the top-level tests/conftest.py, importable from this folder.

Every test folder's conftest is a module named ``conftest``, so ``from conftest import ...``
would find this folder's own; this loads the top-level one under a distinct name instead.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "stylebot_tests_root_conftest"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).resolve().parents[1] / "conftest.py")
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)

_root = sys.modules[_NAME]
free_port = _root.free_port
stop_process = _root.stop_process
wait_for_port = _root.wait_for_port

__all__ = ["free_port", "stop_process", "wait_for_port"]
