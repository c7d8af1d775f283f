"""Suite ``peers``: the same work done by other implementations, in the same run.

- **Flower 1.41/1.42 SecAgg+** (installed by the ``bench`` extra): for the n, d and
  neighbour count k our SecAgg+ picks, each component of the client's and the
  server's work with Flower's primitives composed as Flower composes them
  (:mod:`secagg_bench.flower_peer`) against ours (:mod:`secagg_bench.work`), and
  the whole masked-input step and server unmasking: ours through the protocol
  driver (every message encoded), Flower's from its primitives alone.
- **phe** per-value Paillier encryption against our packed encryption of one
  client's vector (10-client layout, 16-bit values, 2048-bit key, one process).

Every row reports ``ours_s``, ``peer_s`` and ``ours_over_peer`` (below 1: ours
is faster). Without Flower the suite runs the phe rows and says Flower was
skipped.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import phe

from secagg import wire
from secagg._install import install_hint
from secagg.masking.benchmark import run_configuration
from secagg.paillier._compute import Workers
from secagg.paillier.benchmark import measure_naive_phe
from secagg.paillier.encryption import Obfuscation
from secagg.paillier.packing import SlotLayout
from secagg.paillier.parameters import default_threshold
from secagg.paillier.protocol import Client, SessionParameters
from secagg.primitives.signing import SigningKey

from . import flower_peer
from .common import RunContext, resolve, row_line, utc_now
from .floors import expansion_rate_note
from .paillier import key_material
from .progress import Progress
from .report import Column, Row, SuiteReport, Target, machine
from .work import CLIENT_COMPONENTS, SERVER_COMPONENTS, Work, measure_ours

__all__ = ["COLUMNS", "OPTIONS", "PRESETS", "TITLE", "run"]

TITLE = "Peers: Flower SecAgg+ and phe, same work"

OPTIONS = ("clients", "dim", "dropout", "repeats", "paillier_dim")

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"clients": 100, "dim": [100_000], "dropout": 0.1, "repeats": 3, "paillier_dim": 10_000},
    "full": {"clients": 100, "dim": [100_000, 1_000_000], "dropout": 0.1, "repeats": 5, "paillier_dim": 10_000},
    "custom": {"clients": 100, "dim": [1_000_000], "dropout": 0.1, "repeats": 3, "paillier_dim": 10_000},
}

COLUMNS = (
    Column("peer", "params", "peer"),
    Column("role", "params", "role"),
    Column("component", "params", "component"),
    Column("n", "params", "clients", "int"),
    Column("d", "params", "dim", "int"),
    Column("k", "params", "degree", "int"),
    Column("ours", "metrics", "ours_s", "s"),
    Column("peer", "metrics", "peer_s", "s"),
    Column("ours / peer", "metrics", "ours_over_peer", "x"),
)

PAILLIER_CLIENTS, PAILLIER_VALUE_BITS, PAILLIER_KEY_BITS = 10, 16, 2048

FLOWER_WEAKNESSES = (
    "Flower's masks are NOT cryptographic: pseudo_rand_gen folds the 32-byte seed into 32 bits (XOR of its 4-byte "
    "words) and seeds numpy's Mersenne Twister with it, so each mask has 32 bits of entropy and a masked vector can "
    "be unmasked by trying 2^32 seeds. Our masks are AES-128-CTR keystream from a full 32-byte seed. The 'mask "
    "generation' rows compare a secure PRG with an insecure one.",
    "Flower draws mask words with randint(0, 2^32 - 1), which never returns 2^32 - 1: its masks are not uniform "
    "in Z_(2^32) (a negligible bias next to the 32-bit seed).",
    "Flower's vectors are int64: its masked vector is 8 bytes per coordinate on the wire for values mod 2^32 "
    "(ours: 4). Its key agreement is ECDH P-384 with HKDF without salt or info (no session binding); it Shamir-"
    "shares the ~300-byte PEM encoding of the private key (20 GF(2^128) polynomials) where we share the 32-byte "
    "X25519 scalar over one 257-bit prime field.",
    "Only Flower's cryptographic and numeric work is timed (no message records, serialisation of configs or "
    "transport), which favours Flower; our protocol rows include our wire encoding and every check.",
)


def run(overrides: Mapping[str, Any], context: RunContext) -> SuiteReport:
    """Flower rows for each d (if Flower is installed), then the phe row."""
    started, clock = utc_now(), time.perf_counter()
    options = resolve(PRESETS, context.mode, overrides)
    floors = context.floors()
    dims = options["dim"] if isinstance(options["dim"], list) else [options["dim"]]
    flower = flower_peer.available()
    results: list[Row] = []
    notes = [expansion_rate_note(floors)]
    with Progress(len(dims) * flower + 1, "peers", enabled=context.progress) as progress:
        if flower:
            for dim in dims:
                progress.begin(f"flower n={options['clients']} d={dim:,}")
                work = Work.secagg_plus(options["clients"], dim, options["dropout"])
                for row in _flower_rows(work, options["dropout"], options["repeats"]):
                    results.append(row)
                    context.measured(row)
                    progress.write("peers  " + row_line(row, COLUMNS))
                progress.advance()
            notes.extend(FLOWER_WEAKNESSES)
        else:
            notes.append(f"Flower is not installed ({install_hint('bench')}): the Flower SecAgg+ rows were skipped")
        progress.begin(f"phe d={options['paillier_dim']:,}")
        row = _phe_row(options["paillier_dim"])
        results.append(row)
        context.measured(row)
        progress.write("peers  " + row_line(row, COLUMNS))
        progress.advance()
    notes.append(
        "phe encrypts each value into its own ciphertext mod n^2 (512 bytes at 2048 bits; phe.EncodedNumber, r^n "
        "obfuscation); ours packs "
        f"{results[-1]['params']['slots_per_ciphertext']} 16-bit values (with headroom for 10 summands) per ciphertext "
        "and uses DJN obfuscators; phe is timed on a sample of the values and scaled to d"
    )
    return SuiteReport(
        suite="peers",
        mode=context.mode,
        command=context.command,
        machine={**machine(), "flwr": flower_peer.version() if flower else "not installed"},
        started=started,
        seconds=time.perf_counter() - clock,
        floors=floors,
        results=results,
        targets=targets(results),
        notes=notes,
        metric_notes={
            "ours_s": "seconds, ours (per client for client rows)",
            "peer_s": "seconds, the peer doing the same work",
            "ours_over_peer": "ours_s / peer_s: below 1, ours is faster",
            "ours_upload_bytes": "bytes one client sends over the session (ours: every protocol message)",
            "peer_upload_bytes": "Flower: payload bytes only (public keys, share ciphertexts, masked vector, shares)",
        },
    )


def _flower_rows(work: Work, dropout: float, repeats: int) -> list[Row]:
    theirs, uploaded = flower_peer.measure_flower(work, repeats)
    ours = measure_ours(work, repeats)
    protocol = run_configuration(work.clients, work.dim, "harary", dropout, 1)
    peer = f"Flower {flower_peer.version()} SecAgg+"
    rows = [
        _row(peer, role, name, work, ours[name], theirs[name])
        for role, names in (("client", CLIENT_COMPONENTS), ("server", SERVER_COMPONENTS))
        for name in names
    ]
    client_total = _row(
        peer,
        "client",
        "total of the components",
        work,
        sum(ours[n] for n in CLIENT_COMPONENTS),
        sum(theirs[n] for n in CLIENT_COMPONENTS),
    )
    server_total = _row(
        peer,
        "server",
        "total of the components",
        work,
        sum(ours[n] for n in SERVER_COMPONENTS),
        sum(theirs[n] for n in SERVER_COMPONENTS),
    )
    pm = protocol["metrics"]
    step = _row(
        peer,
        "client",
        "masked-input step (protocol)",
        work,
        pm["client_mask_s"] + ours["quantization"],
        theirs["masked-input step"],
    )
    flower_upload = sum(uploaded.values())
    step["metrics"].update(
        ours_upload_bytes=pm["bytes_per_client_upload"],
        peer_upload_bytes=flower_upload,
        ours_upload_over_peer=pm["bytes_per_client_upload"] / flower_upload,
        ours_upload_expansion=pm["upload_expansion"],
        peer_upload_expansion=flower_upload / (4 * work.dim),
        exact=pm["exact"],
    )
    flower_server = theirs["decode masked inputs"] + theirs["Shamir reconstruct"] + theirs["mask removal"]
    unmask = _row(peer, "server", "unmasking (protocol)", work, pm["server_unmask_s"], flower_server)
    return [*rows, client_total, server_total, step, unmask]


def _row(peer: str, role: str, component: str, work: Work, ours: float, theirs: float) -> Row:
    return {
        "params": {"peer": peer, "role": role, "component": component, **work.params()},
        "metrics": {"ours_s": ours, "peer_s": theirs, "ours_over_peer": ours / theirs, "peer_over_ours": theirs / ours},
    }


def _phe_row(dim: int) -> Row:
    """Our packed encryption of one client's vector against phe, one process each."""
    threshold = default_threshold(PAILLIER_CLIENTS)
    with Workers(1) as workers:
        material, _, _ = key_material(PAILLIER_KEY_BITS, PAILLIER_CLIENTS, threshold, workers)
        layout = SlotLayout(PAILLIER_VALUE_BITS, PAILLIER_CLIENTS, material.public.key.key_bits)
        identities = [SigningKey.generate() for _ in range(PAILLIER_CLIENTS)]
        params = SessionParameters(
            public=material.public,
            layout=layout,
            vector_length=dim,
            roster=tuple(range(1, PAILLIER_CLIENTS + 1)),
            min_contributors=threshold,
            identity_keys=tuple(identity.public for identity in identities),
            context=secrets.token_bytes(32),
        )
        values = np.random.default_rng(0).integers(layout.value_min, layout.value_max, dim, endpoint=True)
        started = time.perf_counter()
        sender = Client(params, 1, identities[0], obfuscation=Obfuscation.DJN, workers=workers)
        upload = wire.encode(sender.upload(values))
        ours = time.perf_counter() - started
    sample = min(dim, 50)
    per_value = measure_naive_phe(material.public.key, values[:sample])
    phe_bytes = material.public.key.ciphertext_bytes  # one ciphertext mod n^2 per value
    return {
        "params": {
            "peer": f"phe {getattr(phe, '__version__', '')} per-value encryption".replace("  ", " "),
            "role": "client",
            "component": "Paillier encryption of one vector",
            "clients": PAILLIER_CLIENTS,
            "dim": dim,
            "key_bits": PAILLIER_KEY_BITS,
            "value_bits": PAILLIER_VALUE_BITS,
            "obfuscation": "djn",
            "workers": 1,
            "slots_per_ciphertext": layout.slots_per_plaintext,
            "phe_sample": sample,
        },
        "metrics": {
            "ours_s": ours,
            "peer_s": per_value * dim,
            "ours_over_peer": ours / (per_value * dim),
            "peer_over_ours": per_value * dim / ours,
            "ours_upload_bytes": len(upload),
            "peer_upload_bytes": phe_bytes * dim,
            "ours_upload_over_peer": len(upload) / (phe_bytes * dim),
        },
    }


def targets(results: list[Row]) -> list[Target]:
    """Masking: faster than Flower's SecAgg+ for the same work (client and server, largest d)."""
    out = []
    for role, component in (("client", "masked-input step (protocol)"), ("server", "unmasking (protocol)")):
        rows = [r for r in results if r["params"]["component"] == component]
        if rows:
            row = max(rows, key=lambda r: r["params"]["dim"])
            p = row["params"]
            out.append(
                Target(
                    f"masking {role} over Flower SecAgg+",
                    f"ours / {p['peer'].removesuffix(' SecAgg+')} for the same work: {component}, "
                    f"n = {p['clients']}, d = {p['dim']:,}, k = {p['degree']}",
                    row["metrics"]["ours_over_peer"],
                    1.0,
                    "<=",
                    {k: p[k] for k in ("clients", "dim", "degree", "threshold")},
                )
            )
    phe_rows = [r for r in results if r["params"]["component"] == "Paillier encryption of one vector"]
    for row in phe_rows:
        out.append(
            Target(
                "paillier encryption over phe (peers)",
                f"phe per-value encryption / ours, one client, d = {row['params']['dim']:,}",
                row["metrics"]["peer_over_ours"],
                300.0,
                ">=",
                {k: row["params"][k] for k in ("clients", "dim", "key_bits", "value_bits")},
            )
        )
    return out
