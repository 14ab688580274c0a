"""SYNTHETIC data generators: labelled images drawn from a seed, for examples, tests and the demo.

Nothing here is a photograph; every figure measured on these data says so.
"""
