"""``secagg keys``: provision hospital identities and the federation's trusted-keys file.

Active-mode masking and Paillier uploads are signed with each hospital's Ed25519
identity key; every node checks a round's keys against the federation's
trusted list, which the server does not control. The steps:

1. each hospital runs ``secagg keys new hospital.key``: a fresh identity in an
   owner-only (0600) file, never overwriting one, and its public key in
   ``hospital.key.pub``;
2. the public keys are exchanged out of band (not through the server) and one
   party runs ``secagg keys trust federation.keys a.key.pub b.key.pub ...``;
3. every hospital checks the list it received: ``secagg keys check
   federation.keys --identity hospital.key``, which refuses duplicates and
   malformed lines and confirms that its own key is on it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from secagg._files import WRITABLE_BY_OWNER_ONLY, read_regular_file
from secagg._new_files import write_new_file
from secagg.errors import ConfigurationError
from secagg.integrations.flower.keys import (
    hex_key,
    holds_listed_key,
    read_identity_key,
    read_trusted_lines,
    write_identity_key,
    write_trusted_keys,
)
from secagg.primitives.signing import PUBLIC_KEY_SIZE, SigningKey, check_trusted_key

__all__ = ["main"]

PUBLIC_SUFFIX = ".pub"
MIN_FEDERATION_KEYS = 2
"""Fewest keys a trusted list holds: ``trust`` refuses to write, ``check`` to accept, fewer."""
MAX_PUBLIC_KEY_FILE = 1024
"""Largest ``.pub`` file read (64 hex digits and a newline)."""
_PUB_ADVICE = (
    "whoever may rewrite it decides whom the federation trusts; make it writable by its owner only (chmod 644)"
)


def _public_key(text: str, where: str) -> bytes:
    key = hex_key(text.strip()) or b""
    if len(key) != PUBLIC_KEY_SIZE:
        raise ConfigurationError(f"{where}: not a {PUBLIC_KEY_SIZE}-byte public key in hex")
    return check_trusted_key(key, where)


def _key_argument(argument: str) -> bytes:
    """The public key named by ``argument``: a ``.pub`` file (refused if group or others may write
    it, or if another user owns it: whoever may rewrite it decides whom the federation trusts, as
    for the trusted-keys file it goes into) or the key in hex."""
    if os.path.lexists(argument):
        data = read_regular_file(
            argument, "public-key file", MAX_PUBLIC_KEY_FILE, forbidden_mode=WRITABLE_BY_OWNER_ONLY, advice=_PUB_ADVICE
        )
        return _public_key(data.decode("ascii", errors="replace"), argument)
    return _public_key(argument, f"argument {argument!r}")


def _refuse_identity_file(argument: str, key: bytes, keys: list[bytes], arguments: list[str], number: int) -> None:
    """Refuse an identity key file (or its seed typed in hex, argument ``number``) given where its
    public key belongs (same format: 64 hex digits), which would copy the hospital's private seed
    into the public list: its seed's public key is the one in its ``.pub`` beside it, or one of the
    other keys given. Another given key made from this one as a seed (its own .pub, or a key anyone
    can derive from a public key) is named."""
    derived = SigningKey.generate(lambda size: key).public
    other = arguments[keys.index(derived)] if derived in keys else None
    if not os.path.lexists(argument):
        if other is not None:  # named by its position: what was typed may be a seed, never echoed
            raise ConfigurationError(
                f"argument {number}, a key typed in hex, is the seed of the key in {other}: either it is an identity "
                f"(private) key, whose public key ({other}) belongs on the list in its place, or the key in {other} "
                "was made from a public key, and anyone can sign as it; nothing written"
            )
        return
    beside, listed = argument + PUBLIC_SUFFIX, None
    if os.path.isfile(beside):
        with contextlib.suppress(ConfigurationError):  # an unreadable .pub beside it: judged by the list alone
            listed = _key_argument(beside)
    if derived == listed or other == beside:
        raise ConfigurationError(
            f"{argument} is an identity (private) key, not a public key: give {beside} instead "
            "(a seed in the federation's list would hand it to every party; nothing written)"
        )
    if other is not None:  # which of the two is wrong cannot be told from the keys: neither is listed
        raise ConfigurationError(
            f"the key in {other} is the public key of the value in {argument} taken as a seed: either {argument} "
            f"is an identity (private) key, whose public key ({other}) belongs on the list in its place, or the "
            f"key in {other} was made from a public key, and anyone can sign as it; nothing written"
        )


def _new(path: str) -> int:
    """Both files or neither: an identity is never left beside a ``.pub`` that is not its own (a stale
    one from an earlier key, which the hospital would then send to the federation)."""
    public_path = path + PUBLIC_SUFFIX
    if os.path.lexists(path):  # as write_identity_key would say, before the .pub is looked at
        raise ConfigurationError(
            f"refusing to overwrite {path} (it may be this hospital's identity, enrolled in the federation): "
            "choose another path, or, to replace that identity, remove it deliberately first; nothing written"
        )
    if os.path.lexists(public_path):
        raise ConfigurationError(
            f"{public_path} already exists (the public key of an earlier identity?): move it away or choose "
            "another path; nothing written"
        )
    identity = SigningKey.generate()
    write_identity_key(path, identity)  # refuses a folder every reader of the key would refuse: nothing written
    try:  # synced under a temporary name, then linked to its own: a crash never leaves an empty or partial .pub
        write_new_file(public_path, "public-key file", identity.public.hex().encode("ascii") + b"\n", mode=0o644)
    except BaseException as exc:  # also an interrupt: the identity goes too (write_new_file leaves nothing)
        with contextlib.suppress(OSError):
            os.unlink(path)
        if isinstance(exc, ConfigurationError):
            raise ConfigurationError(f"{exc}; nothing written") from exc
        raise
    print(f"identity key: {path} (mode 0600; keep it on this hospital's node only)")
    print(f"public key:   {identity.public.hex()} (also in {public_path}; send it to the federation)")
    return 0


def _trust(out: str, arguments: list[str]) -> int:
    keys = [_key_argument(argument) for argument in arguments]
    for number, (argument, key) in enumerate(zip(arguments, keys, strict=True), start=1):
        _refuse_identity_file(argument, key, keys, arguments, number)
    if len(keys) < MIN_FEDERATION_KEYS:
        # The same floor `check` applies: never write a list the next step refuses.
        raise ConfigurationError(
            f"{len(keys)} key(s) given; a federation needs at least {MIN_FEDERATION_KEYS} (nothing written)"
        )
    repeated = sorted({key.hex() for key in keys if keys.count(key) > 1})
    if repeated:
        raise ConfigurationError(f"a public key is listed twice: {', '.join(repeated)}")
    write_trusted_keys(out, keys)
    print(f"trusted-keys file: {out} ({len(keys)} hospitals)")
    return 0


def _check(trusted: str, identities: list[str]) -> int:
    lines = read_trusted_lines(trusted)
    keys: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if entry and not entry.startswith("#"):
            key = _public_key(entry, f"{trusted}, line {number}")
            if key in keys:
                raise ConfigurationError(f"{trusted}, line {number}: the key of line {keys.index(key) + 1} again")
            keys.append(key)
    if len(keys) < MIN_FEDERATION_KEYS:
        raise ConfigurationError(
            f"{trusted} lists {len(keys)} key(s); a federation needs at least {MIN_FEDERATION_KEYS}"
        )
    for path in identities:
        own = path[: -len(PUBLIC_SUFFIX)] if path.endswith(PUBLIC_SUFFIX) else "its identity file"
        listed = ConfigurationError(f"{path} holds a public key on the list, not an identity key: give {own}")
        try:
            identity = read_identity_key(path)
        except ConfigurationError:  # e.g. others may read it, as a .pub: say it is a .pub, not "chmod 600 it"
            if holds_listed_key(path, frozenset(keys)):
                raise listed from None
            raise
        public = identity.public
        if identity.seed in keys:  # a .pub given for the identity: the same format, 64 hex digits
            raise listed
        if public not in keys:
            raise ConfigurationError(
                f"the public key of {path} ({public.hex()}) is not in {trusted}: send {path}.pub to whoever builds "
                "the federation's list, out of band, and use the list `secagg keys trust` rebuilds with it"
            )
    print(f"{trusted}: {len(keys)} distinct hospital keys" + (", your identity is listed" if identities else ""))
    return 0


def main(args: argparse.Namespace) -> int:
    """Run ``secagg keys ACTION`` (a refusal raises the library's error: one line, exit 2)."""
    if args.action == "new":
        return _new(args.path)
    if args.action == "public":
        public = read_identity_key(args.path).public.hex()
        if sys.stdout is None:  # closed (`>&-`): printing the key is this action's whole work
            raise ConfigurationError("cannot write to the standard output: it is closed")
        print(public)
        return 0
    if args.action == "trust":
        return _trust(args.out, args.keys)
    return _check(args.trusted, args.identity)
