"""Model architectures: the torch-free schema and model file (architectures, modelfile), the torch modules
(base, wavenet, lstm) and the bridge from a model file to a torch model (bridge)."""
