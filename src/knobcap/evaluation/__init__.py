"""Evaluation: held-out ESR over the control space, plots and the HTML report."""
