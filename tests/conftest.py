"""Shared fixtures: the test pedal's controls and the 30 s test signal.

Helpers that take arguments (a tiny WaveNet config, a session folder, a model file, a run folder) are
plain functions in tests/playkit.py, importable as ``playkit`` because pytest puts tests/ on sys.path
for this conftest.
"""

from __future__ import annotations

import pytest

from knobcap.capture.testsignal import TestSignal, generate_signal
from knobcap.controls import Controls
from playkit import tiny_controls


@pytest.fixture
def controls() -> Controls:
    """The test pedal: drive (audio taper), tone, diodes (silicon | led)."""
    return tiny_controls()


@pytest.fixture(scope="session")
def signal() -> TestSignal:
    """The 30 s test signal (input.wav of a default session); shared, so never edit its arrays."""
    return generate_signal(30.0)
