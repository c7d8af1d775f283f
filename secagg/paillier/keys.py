"""Paillier keys: the public key, threshold parameters, key shares and the single key.

Every key type is a frozen wire message (tags 0x0401-0x0404) validated in
``__post_init__``, so a key decoded from bytes has passed the same checks as one
built in memory:

- :class:`PublicKey` — the modulus n (g = n + 1 implicitly, as in ``phe``). Its
  size must be at least :data:`MIN_KEY_BITS` (2048); :data:`DEFAULT_KEY_BITS`
  (3072) is what the ceremony generates unless told otherwise.
- :class:`ThresholdPublicKey` — n plus what the combiner and decryptors need:
  threshold t, number of decrypting parties l, verification base v and the
  verification keys ``v_i = v^(Delta * s_i) mod n^2`` (Shoup 2000; Damgard-Jurik 2001).
  The single-key mode is the case t = l = 1.
- :class:`KeyShare` — party i's secret ``s_i``; checked against ``v_i`` on
  construction, so a forged or corrupted share is refused when loaded.
- :class:`PrivateKey` — the factors p, q of the single-key mode's key holder.

Key-size policy: moduli below 2048 bits are refused everywhere (generation,
construction, decoding) unless the caller is inside
:func:`insecure_key_sizes_for_testing`, which only tests and demos use.

Ciphertexts are checked to lie in Z*_(n^2) (``0 < c < n^2`` and
``gcd(c, n) = 1``) before any arithmetic touches them: see
:meth:`PublicKey.parse_ciphertexts`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import gmpy2
from phe import paillier as phe_paillier

from secagg import wire
from secagg._validate import require_bytes
from secagg.errors import AuthenticationError, ConfigurationError, DecodeError
from secagg.paillier.key_checks import check_modulus_factors, check_verification_values
from secagg.wire import U16, BigUInt, ListOf, Struct, wire_field

__all__ = [
    "DEFAULT_CONSTANT_TIME",
    "DEFAULT_KEY_BITS",
    "INSECURE_MIN_KEY_BITS",
    "MAX_KEY_BITS",
    "MAX_PARTIES",
    "MIN_KEY_BITS",
    "KeyShare",
    "PrivateKey",
    "PublicKey",
    "ThresholdPublicKey",
    "check_key_bits",
    "insecure_key_sizes_allowed",
    "insecure_key_sizes_for_testing",
    "key_policy",
]

MIN_KEY_BITS = 2048
"""Smallest modulus accepted outside tests (about 112-bit security, NIST SP 800-57)."""

DEFAULT_KEY_BITS = 3072
"""Modulus size the ceremony generates by default (about 128-bit security)."""

DEFAULT_CONSTANT_TIME = True
"""Whether a party exponentiates with its secret (a key share, d, a proof nonce) by GMP's
side-channel-silent ``mpz_powm_sec`` (``gmpy2.powmod_sec``): the default of every
``constant_time`` option (``partial_decrypt``, ``single_key_partial_decrypt``, ``proofs.prove``,
``DecryptingParty``, ``PaillierConfig``, fl_core's ``PaillierAggregator``, the Flower
``make_paillier_mod``). ``constant_time=False`` opts out, by name: gmpy2's ``powmod`` (and phe's
CRT decryption) use sliding windows, so an attacker co-located with a decrypting party could learn
bits of its secret through timing or cache side channels. Cost at 2048 bits (docs/paillier.md,
"Constant-time exponentiation (the default)"): a share's partial decryption about 1.4x, a small
session about 1.15x, the single key holder's about 1.15x (CRT decryption either way)."""

MAX_KEY_BITS = 8192
"""Largest modulus the wire format carries."""

INSECURE_MIN_KEY_BITS = 128
"""Smallest modulus accepted inside :func:`insecure_key_sizes_for_testing`."""

MAX_PARTIES = 256
"""Most decrypting parties: Delta = l! grows with l and enters every exponent."""

MAX_MODULUS_BYTES = MAX_KEY_BITS // 8
MAX_SQUARE_BYTES = 2 * MAX_MODULUS_BYTES

_INSECURE_KEY_SIZES: ContextVar[bool] = ContextVar("secagg_paillier_insecure_key_sizes", default=False)


@contextlib.contextmanager
def insecure_key_sizes_for_testing() -> Iterator[None]:
    """Inside this block, keys down to :data:`INSECURE_MIN_KEY_BITS` bits are accepted.

    **Insecure.** For tests and demos only: such keys are factored in seconds to
    hours. The switch is a context variable, so it covers key generation,
    construction and decoding in this thread/task and nowhere else.
    """
    token = _INSECURE_KEY_SIZES.set(True)
    try:
        yield
    finally:
        _INSECURE_KEY_SIZES.reset(token)


def key_policy(insecure_for_testing: bool) -> contextlib.AbstractContextManager[None]:
    """:func:`insecure_key_sizes_for_testing` if the flag is set, else a no-op context."""
    return insecure_key_sizes_for_testing() if insecure_for_testing else contextlib.nullcontext()


def insecure_key_sizes_allowed() -> bool:
    """True inside :func:`insecure_key_sizes_for_testing`."""
    return _INSECURE_KEY_SIZES.get()


def check_key_bits(bits: int, *, insecure_for_testing: bool = False) -> int:
    """Return ``bits`` if the policy accepts a modulus of that size; ConfigurationError otherwise.

    The floor is :data:`MIN_KEY_BITS`, or :data:`INSECURE_MIN_KEY_BITS` when
    ``insecure_for_testing`` is set or inside :func:`insecure_key_sizes_for_testing`.
    """
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise ConfigurationError(f"key size must be an int number of bits, got {bits!r}")
    insecure = insecure_for_testing or insecure_key_sizes_allowed()
    floor = INSECURE_MIN_KEY_BITS if insecure else MIN_KEY_BITS
    if bits < floor:
        hint = "" if insecure else " (smaller keys only inside insecure_key_sizes_for_testing())"
        raise ConfigurationError(f"Paillier modulus of {bits} bits is below the minimum of {floor} bits{hint}")
    if bits > MAX_KEY_BITS:
        raise ConfigurationError(f"Paillier modulus of {bits} bits exceeds the maximum of {MAX_KEY_BITS} bits")
    return bits


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class PublicKey(wire.Message):
    """A Paillier public key: the modulus n, with generator g = n + 1.

    Invariants: n is odd, has between the policy's minimum and
    :data:`MAX_KEY_BITS` bits, is not a perfect square and has no prime factor
    below 2^16 (:mod:`secagg.paillier.key_checks`).
    """

    TAG: ClassVar[int] = 0x0401

    n: int = wire_field(BigUInt(MAX_MODULUS_BYTES))

    def __post_init__(self) -> None:
        if not _is_int(self.n) or self.n < 3:
            raise ConfigurationError("Paillier modulus must be an int greater than 2")
        check_key_bits(self.n.bit_length())
        if self.n % 2 == 0 or gmpy2.is_square(self.n):
            raise ConfigurationError("Paillier modulus must be an odd non-square")
        check_modulus_factors(self.n)

    @property
    def key_bits(self) -> int:
        """Bits of n."""
        return self.n.bit_length()

    @cached_property
    def nsquare(self) -> int:
        """n^2, the ciphertext modulus."""
        return self.n * self.n

    @property
    def plaintext_bytes(self) -> int:
        """Bytes of a plaintext word: ceil(|n| / 8)."""
        return (self.key_bits + 7) // 8

    @property
    def ciphertext_bytes(self) -> int:
        """Bytes of a ciphertext word on the wire: 2 * ceil(|n| / 8)."""
        return 2 * self.plaintext_bytes

    @cached_property
    def fingerprint(self) -> bytes:
        """SHA-256 of the key's wire encoding: names the key in sessions and shares."""
        return hashlib.sha256(wire.encode(self)).digest()

    @cached_property
    def phe(self) -> phe_paillier.PaillierPublicKey:
        """The same key as a ``phe`` object (for interoperability and the naive baseline)."""
        return phe_paillier.PaillierPublicKey(self.n)

    def check_ciphertexts(self, values: Sequence[Any], who: str) -> None:
        """Require every value to lie in Z*_(n^2); DecodeError naming ``who`` otherwise.

        Range is checked word by word; coprimality with n for the whole batch at
        once: the product of all values mod n is a unit iff every factor is (a
        prime factor of n dividing one value divides the product). Only if the
        batch fails is the offending position searched for.
        """
        nsquare = gmpy2.mpz(self.nsquare)
        n = gmpy2.mpz(self.n)
        product = gmpy2.mpz(1)
        for position, value in enumerate(values):
            if not 0 < value < nsquare:
                raise DecodeError(f"{who}: ciphertext {position} is outside [1, n^2)")
            product = product * value % n
        if gmpy2.gcd(product, n) != 1:
            position = next(i for i, value in enumerate(values) if gmpy2.gcd(value, n) != 1)
            raise DecodeError(f"{who}: ciphertext {position} is not a unit mod n^2 (shares a factor with n)")

    def parse_ciphertexts(self, blob: bytes, who: str) -> list[Any]:
        """Words of a ciphertext blob as integers, each checked to lie in Z*_(n^2)."""
        blob = require_bytes("ciphertext data", blob)
        width = self.ciphertext_bytes
        if len(blob) % width:
            raise DecodeError(f"{who}: ciphertext data of {len(blob)} bytes is not a multiple of {width}")
        values = [gmpy2.mpz(int.from_bytes(blob[i : i + width], "big")) for i in range(0, len(blob), width)]
        self.check_ciphertexts(values, who)
        return values


def _in_unit_group(value: int, n: int) -> bool:
    return 0 < value < n * n and math.gcd(value, n) == 1


@dataclass(frozen=True)
class ThresholdPublicKey(wire.Message):
    """Public parameters of t-of-l threshold decryption (Shoup-style Paillier).

    Attributes:
        key: the Paillier public key (what encrypting clients need).
        threshold: t, the number of partial decryptions that suffice.
        num_parties: l, the number of key shares; parties are numbered 1..l.
        verification_base: v, a random square in Z*_(n^2).
        verification_keys: ``v_i = v^(Delta * s_i) mod n^2`` for i = 1..l.

    Invariants: 1 <= t <= l <= :data:`MAX_PARTIES`; gcd(n, Delta) = 1 (the
    combination inverts 4 Delta^2 mod n); v and every v_i lie in
    Z*_(n^2), are squares as far as the Jacobi symbol mod n shows, are not 1 or -1,
    and the v_i are distinct (:mod:`secagg.paillier.key_checks`). The single-key mode
    is t = l = 1. A key read from a file is also refused if 2t <= l
    (:func:`~secagg.paillier.key_checks.check_loaded_key`).
    """

    TAG: ClassVar[int] = 0x0402

    key: PublicKey = wire_field(Struct(PublicKey))
    threshold: int = wire_field(U16)
    num_parties: int = wire_field(U16)
    verification_base: int = wire_field(BigUInt(MAX_SQUARE_BYTES))
    verification_keys: tuple[int, ...] = wire_field(ListOf(BigUInt(MAX_SQUARE_BYTES), MAX_PARTIES))

    def __post_init__(self) -> None:
        if not isinstance(self.key, PublicKey):
            raise ConfigurationError("threshold key needs a PublicKey")
        if not (_is_int(self.threshold) and _is_int(self.num_parties)):
            raise ConfigurationError("threshold and num_parties must be ints")
        if not 1 <= self.threshold <= self.num_parties <= MAX_PARTIES:
            raise ConfigurationError(
                f"need 1 <= threshold <= parties <= {MAX_PARTIES}, got t={self.threshold}, l={self.num_parties}"
            )
        n = self.key.n
        if math.gcd(n, self.delta) != 1:
            raise ConfigurationError(
                f"modulus shares a factor with Delta = {self.num_parties}!: the combination divides by "
                f"4 * Delta^2 mod n (n must have no prime factor <= {self.num_parties})"
            )
        if not _is_int(self.verification_base) or not _in_unit_group(self.verification_base, n):
            raise ConfigurationError("verification base must lie in Z*_(n^2)")
        if self.verification_base == 1:
            raise ConfigurationError("verification base must not be 1")
        if len(self.verification_keys) != self.num_parties:
            raise ConfigurationError(
                f"{self.num_parties} parties need as many verification keys, got {len(self.verification_keys)}"
            )
        for index, value in enumerate(self.verification_keys, start=1):
            if not _is_int(value) or not _in_unit_group(value, n):
                raise ConfigurationError(f"verification key of party {index} must lie in Z*_(n^2)")
        check_verification_values(n, self.verification_base, self.verification_keys, self.threshold)

    @property
    def delta(self) -> int:
        """Delta = l!, which clears the denominators of the Lagrange coefficients."""
        return math.factorial(self.num_parties)

    @property
    def single_key(self) -> bool:
        """True for the single-key mode (t = l = 1)."""
        return self.num_parties == 1

    @cached_property
    def fingerprint(self) -> bytes:
        """SHA-256 of the wire encoding: binds shares and sessions to these parameters."""
        return hashlib.sha256(wire.encode(self)).digest()

    def verification_key(self, party: int) -> int:
        """v_party; ConfigurationError if ``party`` is not in 1..l."""
        if not _is_int(party) or not 1 <= party <= self.num_parties:
            raise ConfigurationError(f"party {party} is not in 1..{self.num_parties}")
        return self.verification_keys[party - 1]


@dataclass(frozen=True, repr=False)
class KeyShare(wire.Message):
    """Party ``index``'s share ``s_i = f(i) mod n*m`` of the decryption exponent.

    The share is checked against the public verification key on construction
    (``v^(Delta * s_i) = v_i mod n^2``): a truncated, forged or mismatched share
    raises AuthenticationError (DecodeError when it arrives as bytes). The repr
    hides the secret. Store it with :func:`secagg.paillier.storage.protect`.
    """

    TAG: ClassVar[int] = 0x0403

    public: ThresholdPublicKey = wire_field(Struct(ThresholdPublicKey))
    index: int = wire_field(U16)
    secret: int = wire_field(BigUInt(MAX_SQUARE_BYTES))

    def __post_init__(self) -> None:
        if not isinstance(self.public, ThresholdPublicKey):
            raise ConfigurationError("key share needs a ThresholdPublicKey")
        expected = self.public.verification_key(self.index)
        if not _is_int(self.secret) or not 0 < self.secret < self.public.key.nsquare:
            raise ConfigurationError(f"key share of party {self.index}: secret out of range")
        # Raised with the secret on every load: side-channel silent whatever a party's option says.
        check = gmpy2.powmod_sec(
            self.public.verification_base, self.public.delta * self.secret, self.public.key.nsquare
        )
        if check != expected:
            raise AuthenticationError(f"key share of party {self.index} does not match its verification key")

    @property
    def exponent(self) -> int:
        """``2 * Delta * s_i``: a partial decryption is ``c^exponent mod n^2``."""
        return 2 * self.public.delta * self.secret

    @property
    def proof_secret(self) -> int:
        """x = Delta * s_i, the discrete log of the verification key v_i to the base v."""
        return self.public.delta * self.secret

    def __repr__(self) -> str:
        return f"KeyShare(index={self.index}, parties={self.public.num_parties}, secret=<redacted>)"


@dataclass(frozen=True, repr=False)
class PrivateKey(wire.Message):
    """The single-key mode's private key: n = p * q held by one key holder.

    ``public`` is the t = l = 1 parameter set whose only verification key is
    ``v^d`` for ``d = CRT(0 mod lambda(n), 1 mod n)``; the key holder's answer to a
    decryption request is exactly what a one-of-one share would give. Invariants:
    1 < p < q, p * q = n, and the verification key matches.
    """

    TAG: ClassVar[int] = 0x0404

    public: ThresholdPublicKey = wire_field(Struct(ThresholdPublicKey))
    p: int = wire_field(BigUInt(MAX_MODULUS_BYTES))
    q: int = wire_field(BigUInt(MAX_MODULUS_BYTES))

    def __post_init__(self) -> None:
        if not isinstance(self.public, ThresholdPublicKey) or not self.public.single_key:
            raise ConfigurationError("a private key belongs to single-key parameters (t = l = 1)")
        if not (_is_int(self.p) and _is_int(self.q)) or not 1 < self.p < self.q:
            raise ConfigurationError("private key factors must be ints with 1 < p < q")
        if self.p * self.q != self.public.key.n:
            raise AuthenticationError("private key factors do not multiply to the public modulus")
        check = gmpy2.powmod_sec(self.public.verification_base, self.exponent_d, self.public.key.nsquare)
        if check != self.public.verification_keys[0]:
            raise AuthenticationError("private key does not match its verification key")

    @cached_property
    def exponent_d(self) -> int:
        """d with d = 0 mod lambda(n) and d = 1 mod n (so c^d = 1 + M*n mod n^2)."""
        return single_key_exponent(self.p, self.q)

    @property
    def proof_secret(self) -> int:
        """x = d (Delta = 1), the discrete log of the verification key to the base v."""
        return self.exponent_d

    @cached_property
    def phe(self) -> phe_paillier.PaillierPrivateKey:
        """The same key as a ``phe`` private key (CRT decryption)."""
        return phe_paillier.PaillierPrivateKey(self.public.key.phe, self.p, self.q)

    def __repr__(self) -> str:
        return f"PrivateKey(bits={self.public.key.key_bits}, p=<redacted>, q=<redacted>)"


def single_key_exponent(p: int, q: int) -> int:
    """``d = CRT(0 mod lambda(n), 1 mod n)`` for n = p*q, lambda(n) = lcm(p-1, q-1)."""
    n = p * q
    carmichael = math.lcm(p - 1, q - 1)
    if math.gcd(n, carmichael) != 1:
        raise ConfigurationError("gcd(n, lambda(n)) != 1: p and q are unsuitable")
    return carmichael * pow(carmichael, -1, n) % (n * carmichael)
