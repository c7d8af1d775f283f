"""Tests of packed threshold Paillier (secagg.paillier)."""
