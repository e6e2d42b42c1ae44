"""Capture: the test signal, the design, the session folder, screening, reamping and checking takes."""
