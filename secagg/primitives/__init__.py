"""Raw cryptographic primitives under the protocols.

**Hazardous layer.** These functions do exactly one thing each and carry no
protocol checks: they do not know about sessions, rounds, rosters or thresholds
beyond their own arguments. Use :mod:`secagg.masking` or :mod:`secagg.paillier`
unless you are implementing a protocol or checking test vectors.

Modules:

- :mod:`~secagg.primitives.randomness` — the randomness source type; the system
  source and a deterministic one for tests and vectors only.
- :mod:`~secagg.primitives.prg` — AES-128-CTR mask expansion into ring vectors.
- :mod:`~secagg.primitives.kdf` — HKDF-SHA256 with versioned, labelled info strings.
- :mod:`~secagg.primitives.key_agreement` — X25519 key pairs and ECDH.
- :mod:`~secagg.primitives.shamir` — t-of-n Shamir sharing of 32-byte secrets.
- :mod:`~secagg.primitives.aead` — AES-256-GCM for share bundles.
- :mod:`~secagg.primitives.signing` — Ed25519 identity keys for active mode.
"""
