"""``secagg bench masking``: client and server cost of masking against the PRG floor.

For each configuration it runs the in-memory driver and, in the same process,
measures the floor: the time to produce the same number of mask vectors with a
raw AES-128-CTR keystream (one OpenSSL call into a preallocated buffer) and add
them into an accumulator with numpy. The client floor is (k + 1) such
expansions (k pairwise masks and the self-mask); the server floor is the
expansions unmasking regenerates plus summing the n masked inputs. Results are
ratios to those floors measured on the same machine in the same run.
``client_total_s`` is a client's whole compute over the session (every step
after AdvertiseKeys); bytes are per included client, sent and received.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import secagg
from secagg import wire
from secagg._outputs import check_output, standard_stream, write_results
from secagg.descriptor import NO_DESCRIPTOR, SessionDescriptor
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError
from secagg.masking.config import COMPLETE, MaskingConfig
from secagg.masking.driver import run_session
from secagg.masking.messages import MaskedInput, Round
from secagg.masking.parameters import planned_dropouts
from secagg.ring import PackedVector, Ring, RingVector

__all__ = ["FloorTimer", "main", "masked_input_size", "median_seconds", "run_configuration", "sized_threshold"]

FLOOR_REPEATS = 5


class FloorTimer:
    """Times raw AES-CTR keystream + numpy add for vectors of one length."""

    def __init__(self, length: int, ring: Ring) -> None:
        self.ring = ring
        self.nbytes = length * ring.element_size
        self._zeros = bytes(self.nbytes)
        self._buffer = np.empty(self.nbytes + 16, dtype=np.uint8)
        self._words = self._buffer[: self.nbytes].view(ring.dtype)
        self._accumulator = ring.zeros(length)

    def expansion_s(self) -> float:
        """Median seconds for one keystream expansion added into an accumulator."""

        def once() -> None:
            stream = Cipher(algorithms.AES(os.urandom(16)), modes.CTR(bytes(16))).encryptor()
            stream.update_into(self._zeros, memoryview(self._buffer.data).cast("B"))
            np.add(self._accumulator, self._words, out=self._accumulator)

        return median_seconds(once)

    def add_s(self) -> float:
        """Median seconds for one vector add (summing a masked input)."""
        return median_seconds(lambda: np.add(self._accumulator, self._words, out=self._accumulator))


def median_seconds(operation: Callable[[], object], repeats: int = FLOOR_REPEATS) -> float:
    """Median wall seconds of ``repeats`` calls of ``operation``."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        operation()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


class _StepClock:
    """A driver ``tamper`` hook that passes every message through unchanged and
    charges each client the time from its inbound message to the next message
    event: its whole ``client_step`` (the driver steps clients one at a time).
    AdvertiseKeys (two key generations, no inbound message) is not timed."""

    def __init__(self) -> None:
        self.seconds: defaultdict[int, float] = defaultdict(float)
        self._open: tuple[int, float] | None = None

    def __call__(self, round_: Round, direction: str, client: int, data: bytes) -> bytes:
        now = time.perf_counter()
        if self._open is not None:
            self.seconds[self._open[0]] += now - self._open[1]
        self._open = (client, now) if direction == "down" else None
        return data


def _dropout_schedule(num_clients: int, rate: float, rng: np.random.Generator) -> dict[int, Round]:
    """Drop ``round(rate * n)`` random clients: half after ShareKeys (their pairwise
    masks must be regenerated), half after sending their masked input."""
    count = round(rate * num_clients)
    dropped = rng.choice(np.arange(1, num_clients + 1), size=count, replace=False)
    return {
        int(client): Round.MASKED_INPUT if i % 2 == 0 else Round.UNMASKING for i, client in enumerate(dropped)
    }


def _descriptor(num_clients: int) -> bytes:
    """A realistic round descriptor (quantization, weight, model, round, training parameters):
    the bench measures the session with the record that binds it."""
    quantization = QuantizationConfig(0.5, 16, num_clients, ring_bits=64, max_weight=4096)
    parameters = {"config/lr": 0.1, "config/local-epochs": 5, "config/batch-size": 16, "config/server-round": 1}
    return SessionDescriptor.create(
        quantization, weight_key="num-examples", layout_digest=bytes(32), model_digest=bytes(range(32)), run_id=1,
        server_round=1, parameters=parameters,
    ).digest()


def harary_config(num_clients: int, dim: int, dropout: float, descriptor: bytes = NO_DESCRIPTOR) -> MaskingConfig:
    """SecAgg+ at every n (no complete-graph cut-off), sized as the defaults size it
    (one dropout below 20 clients, 10% of n at each of the four stages from 20 on),
    or for the session-wide ``dropout`` the bench simulates if that is larger."""
    default = planned_dropouts(num_clients) / num_clients
    return MaskingConfig.secagg_plus(
        num_clients, dim, dropout_fraction=max(dropout, default), complete_up_to=0, descriptor=descriptor,
        mode="semi-honest",
    )


def _config(num_clients: int, dim: int, graph: str, dropout: float, ring_bits: int) -> MaskingConfig:
    descriptor = _descriptor(num_clients)
    if graph == COMPLETE:
        config = MaskingConfig.secagg(num_clients, dim, descriptor=descriptor, mode="semi-honest")
    else:
        config = harary_config(num_clients, dim, dropout, descriptor)
    return dataclasses.replace(config, ring_bits=ring_bits)


def sized_threshold(num_clients: int, graph: str, dropout: float) -> int | None:
    """t of the configuration :func:`run_configuration` builds for ``num_clients`` on ``graph`` at the
    ``dropout`` rate, or None where the library refuses to size one (no SecAgg+ graph is secure and live).

    A session completes only if t clients answer, so ``round(dropout * n)`` dropouts need
    ``n - round(dropout * n) >= t`` (``secagg bench`` checks both before any work)."""
    try:
        return _config(num_clients, 1, graph, dropout, 32).threshold
    except ConfigurationError:
        return None


def run_configuration(
    num_clients: int, dim: int, graph: str, dropout: float, repeats: int = 1, ring_bits: int = 32
) -> dict[str, Any]:
    """Run one configuration ``repeats`` times in Z_(2^ring_bits) (8..64: masked inputs packed
    ``ring_bits`` bits a coordinate); return its params and metrics."""
    config = _config(num_clients, dim, graph, dropout, ring_bits)
    rng = np.random.default_rng(0)
    inputs: dict[int, RingVector] = {
        client: config.ring.reduce(rng.integers(0, config.ring.container.modulus, dim, dtype=config.ring.dtype))
        for client in range(1, num_clients + 1)
    }
    client_s, server_s, uploads, regenerated = [], [], [], []
    client_total_s, downloads = [], []
    exact = True
    for _ in range(repeats):
        dropouts = _dropout_schedule(num_clients, dropout, rng)
        clock = _StepClock()
        # Collect whatever earlier work left on the heap (a peer's millions of
        # Python ints, say) now, not as a pause inside a timed step.
        gc.collect()
        result = run_session(config, inputs, dropouts, record_transcript=False, tamper=clock)
        expected = config.ring.sum((inputs[c] for c in result.included), dim)
        exact = exact and bool(np.array_equal(result.aggregate, expected))
        client_s.append(statistics.median(result.client_mask_s.values()))
        client_total_s.append(statistics.median(clock.seconds[c] for c in result.included))
        server_s.append(result.server_unmask_s)
        uploads.append(result.bytes_per_client_upload)
        downloads.append(result.bytes_sent["client_download"] / max(1, len(result.included)))
        regenerated.append(_server_expansions(config, dropouts, len(result.included)))
    # What binding the round costs each party: build the descriptor, re-validate the config, hash the record.
    descriptor_s = median_seconds(lambda: dataclasses.replace(config, descriptor=_descriptor(num_clients)).digest())
    floor = FloorTimer(dim, config.ring.container)
    expansion_s, add_s = floor.expansion_s(), floor.add_s()
    masks_per_client = config.degree + 1
    metrics = {
        "client_mask_s": statistics.median(client_s),
        "server_unmask_s": statistics.median(server_s),
        "floor_client_s": masks_per_client * expansion_s,
        "floor_server_s": statistics.median(regenerated) * expansion_s + num_clients * add_s,
        "floor_expansion_s": expansion_s,
        "client_total_s": statistics.median(client_total_s),
        "bytes_per_client_upload": statistics.median(uploads),
        "bytes_per_client_download": statistics.median(downloads),
        "bytes_plain_float32": 4 * dim,
        "masked_input_bytes": masked_input_size(config),
        "masked_bytes_per_parameter": masked_input_size(config) / dim,
        "exact": exact,
        "descriptor_s": descriptor_s,
    }
    metrics["descriptor_over_client_total"] = descriptor_s / metrics["client_total_s"]
    metrics["client_over_floor"] = metrics["client_mask_s"] / metrics["floor_client_s"]
    metrics["server_over_floor"] = metrics["server_unmask_s"] / metrics["floor_server_s"]
    metrics["upload_expansion"] = metrics["bytes_per_client_upload"] / metrics["bytes_plain_float32"]
    metrics["download_expansion"] = metrics["bytes_per_client_download"] / metrics["bytes_plain_float32"]
    params = {
        "clients": num_clients,
        "dim": dim,
        "graph": config.graph,
        "requested_graph": graph,
        "degree": config.degree,
        "threshold": config.threshold,
        "dropout": dropout,
        "ring_bits": config.ring_bits,
        "repeats": repeats,
    }
    return {"params": params, "metrics": metrics}


def masked_input_size(config: MaskingConfig) -> int:
    """Bytes of one MaskedInput message at ``config`` (envelope, sender, session id, u8 b,
    u32 d and the ``ceil(d * b / 8)`` packed bytes)."""
    vector = PackedVector(config.ring_bits, config.ring.zeros(config.vector_length))
    return len(wire.encode(MaskedInput(1, bytes(32), vector)))


def _server_expansions(config: MaskingConfig, dropouts: dict[int, Round], included: int) -> int:
    """Self-masks of the included clients plus, for each client that dropped after
    ShareKeys without a masked input, one pairwise mask per neighbour (an upper
    bound on the surviving neighbours, hence a conservative, lower floor)."""
    lost_after_sharing = sum(1 for r in dropouts.values() if r == Round.MASKED_INPUT)
    return included + lost_after_sharing * config.degree


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "numpy": np.__version__,
        "secagg": secagg.__version__,
    }


def main(args: argparse.Namespace) -> int:
    """Run the grid ``args`` describes (clients, dim, graph, dropout: lists; repeats; json: a path or
    None); print a table; write the JSON report (checked before anything is measured; if the write
    fails, printed on stdout instead and ConfigurationError naming the path)."""
    if args.json:
        check_output(args.json, "benchmark report")
    results = []
    header = f"{'n':>5} {'d':>9} {'graph':>8} {'k':>4} {'t':>4} {'drop':>5} {'client s':>9} {'x floor':>7} "
    header += f"{'server s':>9} {'x floor':>7} {'upload/f32':>10} {'b':>3} {'B/param':>7} exact"
    print(header)
    for num_clients in args.clients:
        for dim in args.dim:
            for graph in args.graph:
                for dropout in args.dropout:
                    row = run_configuration(num_clients, dim, graph, dropout, args.repeats,
                                            getattr(args, "ring_bits", 32))
                    results.append(row)
                    p, m = row["params"], row["metrics"]
                    print(
                        f"{p['clients']:>5} {p['dim']:>9} {p['graph']:>8} {p['degree']:>4} {p['threshold']:>4} "
                        f"{p['dropout']:>5.2f} {m['client_mask_s']:>9.4f} {m['client_over_floor']:>7.2f} "
                        f"{m['server_unmask_s']:>9.4f} {m['server_over_floor']:>7.2f} "
                        f"{m['upload_expansion']:>10.3f} {p['ring_bits']:>3} {m['masked_bytes_per_parameter']:>7.3f} "
                        f"{m['exact']}",
                        flush=True,
                    )
    report = {"suite": "masking", "machine": machine(), "results": results}
    if args.json:
        write_results(args.json, "benchmark report", json.dumps(report, indent=2) + "\n")  # or on stdout
        if standard_stream(args.json) is None:
            print(f"wrote {args.json}")
    return 0 if all(row["metrics"]["exact"] for row in results) else 1
