"""Small signal-processing building blocks shared by the virtual devices (oversampling, filters)."""

from knobcap.dsp.oversample import Oversampler, design_halfband

__all__ = ["Oversampler", "design_halfband"]
