"""The reference test vectors of secagg: every primitive, message and protocol run.

A reviewer or a second implementation reproduces each vector from
``docs/spec.md`` alone; ``docs/vectors.md`` describes the file format (modelled
on Wycheproof and the IETF VDAF drafts). The committed files live in
``secagg/vectors/data`` and ship with the package, with one JSON Schema per
file type in ``secagg/vectors/schemas``.

- :func:`load_vectors` — one committed vector file, parsed.
- :func:`verify_directory` — run the implementation against every file in a folder.
- :func:`generate_directory` — regenerate every file from deterministic
  randomness; the output equals the committed files byte for byte.

From the command line: ``secagg vectors verify [DIR]`` and ``secagg vectors generate DIR``.
"""

from __future__ import annotations

from secagg.vectors._format import GENERATOR_VERSION, VectorError
from secagg.vectors._run import (
    DATA_DIR,
    SCHEMA_DIR,
    SUITES,
    FileReport,
    generate_directory,
    load_schema,
    load_vectors,
    verify_directory,
    verify_document,
)

__all__ = [
    "DATA_DIR",
    "GENERATOR_VERSION",
    "SCHEMA_DIR",
    "SUITES",
    "FileReport",
    "VectorError",
    "generate_directory",
    "load_schema",
    "load_vectors",
    "verify_directory",
    "verify_document",
]
