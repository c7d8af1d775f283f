"""Tests of the pairwise-masking protocol (secagg.masking)."""
