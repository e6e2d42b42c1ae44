"""The ``knobcap`` command: each verb of the user journey parses its options, calls the library, prints.

- :mod:`~knobcap.cli.base`: the app, the error line, and the library loaded when a verb first uses it;
- :mod:`~knobcap.cli.capture`: signal, init, screen, plan, reamp, check;
- :mod:`~knobcap.cli.recordings`: import;
- :mod:`~knobcap.cli.models`: train, eval, report, render, export, play, demo.

Tables, progress bars and the lines each verb prints are in :mod:`knobcap.console`. Errors from the
library (``ValueError`` subclasses with a plain message) end in a red line and exit status 1, never in a
traceback.
"""

from knobcap.cli import capture, models, recordings  # noqa: F401  (their verbs register, in this order)
from knobcap.cli.base import app

__all__ = ["app"]
