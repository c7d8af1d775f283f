"""A 2048-bit threshold Paillier key for the Flower tests, dealt from fixed safe primes, and key files.

The primes were found once by ``generate_safe_primes(1024, 2,
random_bytes=InsecureDeterministicRandom(2048))`` (about 2 s); keeping them
here makes every test key a real 2048-bit key without a prime search per run.
Key-share files are sealed with scrypt N = 2^15, the floor for key files (write_key_files has no
test switch), the cheapest cost they can have.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from secagg.integrations.flower.keys import write_identity_key, write_key_files, write_trusted_keys
from secagg.paillier import ThresholdKeyMaterial, ceremony, deal_threshold_key_from_primes
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

P_1024 = int(
    "15410844817744739470277439452263749181700912426110372709175200566755561698466646165486189833296865031922123661"
    "26422090724032008757520225915413499862378549374670705816004951472063368099680430843483465132515778095880224672"
    "18514721202344190826700365149640466235995312426339532578094185373777357319568870687651027"
)
Q_1024 = int(
    "14328992410160436006628748296939431491505757487973970077059068976916083037772240855862187886572626483851886298"
    "01246968753113987215629087942537077941059301216790894744350836623996668339172010339764788442081594473110718323"
    "13578399848186337382934357392035093900734353487111208729959182845948214061928929160121079"
)
PASSPHRASE = "correct horse battery staple"
SCRYPT_LOG_N = 15


@lru_cache(maxsize=8)
def material(num_parties: int, threshold: int) -> ThresholdKeyMaterial:
    """A t-of-l 2048-bit key (deterministic dealing from the fixed primes)."""
    return deal_threshold_key_from_primes(
        P_1024, Q_1024, num_parties=num_parties, threshold=threshold,
        random_bytes=InsecureDeterministicRandom(b"flower-tests"),
    )


@lru_cache(maxsize=4)
def unsafe_material(num_parties: int, threshold: int) -> ThresholdKeyMaterial:
    """A t-of-l 2048-bit key with 2t <= l, which the public dealers refuse: built through the
    dealer's private, unchecked arithmetic, only for tests that show such a key is refused
    (PaillierOptions, sessions). Refuses to build a usable shape."""
    assert 2 * threshold <= num_parties, f"{threshold}-of-{num_parties} is dealt by the public dealer"
    return ceremony._deal(P_1024, Q_1024, num_parties, threshold, InsecureDeterministicRandom(b"flower-tests"), False)


def key_files(directory: Path, num_parties: int, threshold: int) -> tuple[Path, list[Path]]:
    """The dealer's output in ``directory``: the public-key file and one sealed share file per party."""
    directory.mkdir(parents=True, exist_ok=True)
    return write_key_files(
        material(num_parties, threshold), directory, [PASSPHRASE] * num_parties, scrypt_log_n=SCRYPT_LOG_N
    )


def _identity_key(index: int) -> SigningKey:
    return SigningKey.generate(InsecureDeterministicRandom(f"identity-{index}".encode()))


def trusted_keys(count: int) -> frozenset[bytes]:
    """The public keys :func:`identity_files` lists for ``count`` nodes: the server's ``trusted_keys``."""
    return frozenset(_identity_key(index).public for index in range(count))


def identity_files(
    directory: Path, count: int, trusted: int | None = None
) -> tuple[list[Path], Path, list[bytes]]:
    """``count`` deterministic identity key files (0600; uploads and active-mode keys are signed) and
    a trusted-keys file listing the first ``trusted`` of them (all by default); also the public keys."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = [_identity_key(i) for i in range(count)]
    paths = []
    for index, key in enumerate(keys):
        path = directory / f"identity-{index}.key"
        write_identity_key(path, key)
        paths.append(path)
    trusted_path = directory / "trusted.keys"
    write_trusted_keys(trusted_path, [key.public for key in keys[: trusted if trusted is not None else count]])
    return paths, trusted_path, [key.public for key in keys]
