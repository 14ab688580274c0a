"""Sources, preprocessing, engine and decoder composed into predictions."""
