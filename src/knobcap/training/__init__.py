"""Training: the torch-free config, the data, the losses, the Lightning loop and the run folder."""
