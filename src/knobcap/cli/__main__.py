"""``python -m knobcap.cli``: the same as the ``knobcap`` command."""

from knobcap.cli import app

app()
