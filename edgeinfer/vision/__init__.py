"""Pure numpy/OpenCV image functions: preprocessing and decoders. Needs no backend."""
