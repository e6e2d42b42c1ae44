"""knobcap: parametric neural capture of guitar pedals and amps.

One model conditioned on every knob and switch of a device, trained from a short recording session
chosen by experimental design, cheap enough to run live on a CPU.
"""

__version__ = "0.1.0"
