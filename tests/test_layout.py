"""How the package is laid out: the running core never loads training code."""

from __future__ import annotations

import subprocess
import sys

CORE = ["voicewatch.cli", "voicewatch.service", "voicewatch.pipeline", "voicewatch.control", "voicewatch.enrollment",
        "voicewatch.evidence", "voicewatch.webapp", "voicewatch.plugins.replay", "voicewatch.plugins.live",
        "voicewatch.plugins.dvb"]


def test_the_core_and_enrollment_import_no_training_module() -> None:
    code = f"""
import importlib, sys
import numpy as np
for name in {CORE!r}:
    importlib.import_module(name)
from voicewatch.enrollment import exemplar_windows
exemplar_windows(np.zeros((2, 32000), dtype=np.float32), 16000)  # the degraded copies enrollment adds
print(sorted(m for m in sys.modules if m.startswith("voicewatch.training")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
