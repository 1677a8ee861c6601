"""Dataset export records; the text anonymizer in anonymize/ needs no tables."""
