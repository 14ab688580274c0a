"""Model optimization: calibration data, hardware-aware INT8 quantization advice and tooling."""
