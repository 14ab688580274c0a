"""Model import, graph analysis and memory planning. Knows no runtime."""
