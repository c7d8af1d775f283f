"""Tests of the committed test vectors (secagg.vectors) and their generator."""
