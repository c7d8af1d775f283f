"""Data for the hospital simulation: load, hold out a test set, split, standardise.

- :func:`load_dataset`: scikit-learn's bundled breast-cancer (Wisconsin
  diagnostic; 569 patients, 30 features, malignant/benign) or digits (1797
  8x8 images, 10 classes). scikit-learn is the optional ``examples`` extra and
  is imported only here, only when a dataset is loaded.
- :func:`train_test_split`: a stratified held-out global test set.
- :func:`partition_iid` / :func:`partition_dirichlet`: the training set split
  across hospitals, either uniformly at random or with label skew (each
  hospital's class proportions drawn from Dirichlet(alpha); smaller alpha, more skew).
- Standardisation, computed locally and combined securely: each hospital
  computes the mean and the mean of squares of every feature on its own rows
  (:func:`local_moments`); one aggregation, through the same aggregator as the
  training, turns them into the pooled mean and standard deviation
  (:func:`federated_standardiser`), which every hospital and the test site
  apply (:class:`Standardiser`). The server learns the pooled statistics only.
  Standardising each hospital with its own statistics alone is not enough under
  label skew: a hospital with mostly benign cases centres its features on the
  benign mean, another on the malignant one, and the shared model can no longer
  separate the classes (held-out accuracy drops to 87-93% on some splits).
- :func:`make_federation`: load, hold out, split, in one call (raw features).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fl_core.aggregators.base import Aggregator, ClientUpdate
from fl_core.models import FloatArray, IntArray
from secagg._install import install_hint
from secagg._validate import EXACT_INTEGER_LIMIT, exact_float64, require_rng
from secagg.errors import ConfigurationError, ConfigurationTypeError

__all__ = [
    "DATASETS",
    "FEATURE_BOUNDS",
    "ClientData",
    "Federation",
    "Standardiser",
    "data_problem",
    "federated_standardiser",
    "load_dataset",
    "local_moments",
    "make_federation",
    "moments_quantization",
    "partition_dirichlet",
    "partition_iid",
    "train_test_split",
]

DATASETS = ("breast-cancer", "digits")
"""Names accepted by :func:`load_dataset`."""

FEATURE_BOUNDS = {"breast-cancer": 8192.0, "digits": 16.0}
"""Public bounds on |feature| per dataset, as a data dictionary would state them:
breast-cancer's largest feature is a cell-nucleus area below 4300; digits are pixel
intensities in 0..16. They size the quantization of the standardisation round."""

MIN_STD = 1e-8
"""Features whose local standard deviation is below this are centred, not scaled."""

FLOAT64_BITS = 53
"""The most bits a quantized value can have: quantization computes in float64."""

MIN_ROWS = 10
"""Rows each hospital gets at least in a Dirichlet split (fewer only when the data are scarce)."""

MAX_DIRICHLET_DRAWS = 100
"""Dirichlet splits are redrawn until every hospital has enough rows; give up after this many."""

EXAMPLES_EXTRA_HINT = f"scikit-learn is needed for the bundled datasets: {install_hint('examples')}"


@dataclass(frozen=True)
class ClientData:
    """One hospital's local training data, already standardised locally.

    Attributes:
        client_id: the hospital's id (a non-negative int).
        features: float64 array ``(num_samples, num_features)``.
        labels: int64 array ``(num_samples,)`` of class indices.
    """

    client_id: int
    features: FloatArray = field(repr=False)
    labels: IntArray = field(repr=False)

    def __post_init__(self) -> None:
        for name, value in (("features", self.features), ("labels", self.labels)):
            if not isinstance(value, np.ndarray):
                raise ConfigurationTypeError(
                    f"hospital {self.client_id}: {name} must be a numpy array, got {type(value).__name__}"
                )
        if self.features.ndim != 2 or self.labels.ndim != 1 or self.features.shape[0] != self.labels.shape[0]:
            raise ConfigurationError(
                f"hospital {self.client_id}: features {self.features.shape} and labels {self.labels.shape} do not match"
            )
        if self.features.shape[0] == 0:
            raise ConfigurationError(f"hospital {self.client_id} has no data")

    @property
    def num_samples(self) -> int:
        """Rows of local data (the hospital's weight in FedAvg)."""
        return int(self.features.shape[0])


def data_problem(features: object, labels: object, width: int, num_classes: int | None) -> str | None:
    """Why a model of ``width`` features (and ``num_classes`` classes, when it says) cannot train or
    be evaluated on ``features`` and ``labels``, or None: features that are no 2-D real array of
    ``width`` columns, labels that are no 1-D integer array of as many rows, or a label outside
    ``0 .. num_classes - 1`` (numpy would read -1 as the last class without a word)."""
    if not isinstance(features, np.ndarray) or not isinstance(labels, np.ndarray):
        return "features and labels must be numpy arrays"
    if features.dtype.kind not in "fiub":
        return f"features must be real numbers, got {features.dtype.str}"
    if labels.dtype.kind not in "iu":
        exact = labels.dtype.kind == "b" or (labels.dtype.kind == "f" and labels.dtype.itemsize <= 8)
        floats = labels.astype(np.float64) if exact else np.array([0.5])  # no hint for longdouble, complex, ...
        whole = bool(np.all((floats == np.trunc(floats)) & (np.abs(floats) <= EXACT_INTEGER_LIMIT)))  # not NaN/inf
        return f"labels must be integers, got {labels.dtype}" + (", give labels.astype(np.int64) (exact)" * whole)
    if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
        return f"features {features.shape} and labels {labels.shape} do not match"
    if features.shape[1] != width:
        return f"its features have {features.shape[1]} columns, the model takes {width}"
    return _label_problem(labels, num_classes)


def _label_problem(labels: IntArray, num_classes: int | None) -> str | None:
    """A label below 0, or at or above ``num_classes`` when it is known, or None."""
    if not labels.size:
        return None
    low, high = int(labels.min()), int(labels.max())
    outside = low if low < 0 else high if num_classes is not None and high >= num_classes else None
    if outside is None:
        return None
    classes = f"the model's {num_classes} classes" if num_classes is not None else "the class indices 0, 1, ..."
    return f"label {outside} outside {classes}"


@dataclass(frozen=True)
class Federation:
    """A dataset split across hospitals, with a held-out global test set."""

    name: str
    clients: tuple[ClientData, ...]
    test_features: FloatArray = field(repr=False)
    test_labels: IntArray = field(repr=False)
    num_classes: int

    @property
    def num_features(self) -> int:
        """Input dimension."""
        return int(self.test_features.shape[1])

    def pooled(self) -> tuple[FloatArray, IntArray]:
        """All hospitals' rows in one array: only for the centralised reference model."""
        return (
            np.concatenate([c.features for c in self.clients]),
            np.concatenate([c.labels for c in self.clients]),
        )

    def standardised(self, standardiser: Standardiser) -> Federation:
        """Every hospital's rows and the test set passed through ``standardiser``."""
        return replace(
            self,
            clients=tuple(replace(c, features=standardiser.apply(c.features)) for c in self.clients),
            test_features=standardiser.apply(self.test_features),
        )


def load_dataset(name: str) -> tuple[FloatArray, IntArray]:
    """Features and labels of a bundled scikit-learn dataset (see :data:`DATASETS`).

    Raises ConfigurationError for an unknown name, ImportError (with the
    ``examples`` extra named) if scikit-learn is not installed.
    """
    if name not in DATASETS:
        raise ConfigurationError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    try:
        sklearn_datasets = importlib.import_module("sklearn.datasets")
    except ImportError as exc:
        raise ImportError(EXAMPLES_EXTRA_HINT) from exc
    loader = sklearn_datasets.load_breast_cancer if name == "breast-cancer" else sklearn_datasets.load_digits
    bunch = loader()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def train_test_split(labels: IntArray, test_fraction: float, rng: np.random.Generator) -> tuple[IntArray, IntArray]:
    """Stratified split of row indices: ``test_fraction`` of every class goes to the test set.

    ``rng`` is a ``numpy.random.Generator`` (ConfigurationTypeError otherwise, a legacy
    ``RandomState`` too), as every ``rng`` of the library (the same for the partitions below)."""
    require_rng("rng", rng)
    if not 0.0 < test_fraction < 1.0:
        raise ConfigurationError(f"test_fraction must be in (0, 1), got {test_fraction}")
    test_parts = []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        test_parts.append(rows[: round(test_fraction * rows.shape[0])])
    test = np.sort(np.concatenate(test_parts))
    train = np.setdiff1d(np.arange(labels.shape[0]), test)
    return train, test


def partition_iid(num_rows: int, num_hospitals: int, rng: np.random.Generator) -> list[IntArray]:
    """Rows ``0..num_rows-1`` shuffled and dealt into ``num_hospitals`` near-equal parts."""
    require_rng("rng", rng)
    if not 1 <= num_hospitals <= num_rows:
        raise ConfigurationError(f"cannot split {num_rows} rows across {num_hospitals} hospitals")
    return [np.sort(part) for part in np.array_split(rng.permutation(num_rows), num_hospitals)]


def partition_dirichlet(
    labels: IntArray, num_hospitals: int, alpha: float, rng: np.random.Generator, min_rows: int = MIN_ROWS
) -> list[IntArray]:
    """Label-skewed split: each class is divided among hospitals in Dirichlet(alpha) proportions.

    Redraws until every hospital has at least ``min_rows`` rows (the usual
    practice; a hospital with a handful of rows has nothing to train on).
    Raises ConfigurationError if that is impossible or keeps failing.
    """
    require_rng("rng", rng)
    if not (np.isfinite(alpha) and alpha > 0):
        raise ConfigurationError(f"Dirichlet alpha must be positive, got {alpha}")
    if num_hospitals < 1 or num_hospitals * min_rows > labels.shape[0]:
        raise ConfigurationError(
            f"cannot give {num_hospitals} hospitals {min_rows} rows each from {labels.shape[0]} rows"
        )
    classes = np.unique(labels)
    for _ in range(MAX_DIRICHLET_DRAWS):
        parts: list[list[IntArray]] = [[] for _ in range(num_hospitals)]
        for label in classes:
            rows = rng.permutation(np.flatnonzero(labels == label))
            proportions = rng.dirichlet(np.full(num_hospitals, alpha))
            cuts = (np.cumsum(proportions)[:-1] * rows.shape[0]).astype(np.int64)
            for hospital, chunk in enumerate(np.split(rows, cuts)):
                parts[hospital].append(chunk)
        split = [np.sort(np.concatenate(chunks)) for chunks in parts]
        if min(part.shape[0] for part in split) >= min_rows:
            return split
    raise ConfigurationError(
        f"the Dirichlet({alpha:g}) split of {labels.shape[0]} rows cannot give {num_hospitals} hospitals "
        f"{min_rows} row{'s' if min_rows > 1 else ''} each (none of {MAX_DIRICHLET_DRAWS} draws did); use a larger "
        "alpha or fewer hospitals"
    )


@dataclass(frozen=True)
class Standardiser:
    """Per-feature centring and scaling: ``(x - mean) / std``.

    Features whose standard deviation is below :data:`MIN_STD` are only centred.
    """

    mean: FloatArray = field(repr=False)
    std: FloatArray = field(repr=False)

    def __post_init__(self) -> None:
        for name, value in (("mean", self.mean), ("std", self.std)):
            if not isinstance(value, np.ndarray):
                raise ConfigurationTypeError(f"Standardiser {name} must be a numpy array, got {type(value).__name__}")
            # Held as the float64 values bind_scaling binds, exactly: what it binds is what apply uses.
            exact = exact_float64(f"Standardiser {name}", value)
            if exact is None:
                raise ConfigurationError(
                    f"Standardiser {name}: dtype {value.dtype} is no real number a float64 holds exactly"
                )
            object.__setattr__(self, name, exact.reshape(value.shape))
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise ConfigurationError(f"mean {self.mean.shape} and std {self.std.shape} must be equal-length vectors")
        for name, value in (("mean", self.mean), ("std", self.std)):
            if not np.all(np.isfinite(value)):  # NaN would turn every hospital's feature into NaN
                raise ConfigurationError(f"Standardiser {name} must be finite, got {value[~np.isfinite(value)][0]}")
        if np.any(self.std < 0):  # read as below MIN_STD, the feature would be centred only, without a word
            feature = int(np.argmax(self.std < 0))
            raise ConfigurationError(
                f"Standardiser std must be non-negative, got {self.std[feature]} for feature {feature}"
            )

    @classmethod
    def fit(cls, features: FloatArray) -> Standardiser:
        """The statistics of ``features`` itself (what a single site computes on its rows)."""
        return cls.from_moments(local_moments(features))

    @classmethod
    def from_moments(cls, moments: FloatArray) -> Standardiser:
        """From ``(E[x], E[x^2])`` per feature, as :func:`local_moments` lays them out."""
        if moments.ndim != 1 or moments.shape[0] % 2:
            raise ConfigurationError("moments must be a vector of means followed by means of squares")
        mean, mean_square = np.split(moments, 2)
        # Quantization may push E[x^2] - E[x]^2 a hair below zero for constant features.
        return cls(mean, np.sqrt(np.maximum(mean_square - mean * mean, 0.0)))

    def apply(self, features: FloatArray) -> FloatArray:
        """``features`` centred and scaled column by column."""
        if not isinstance(features, np.ndarray):
            raise ConfigurationTypeError(f"features must be a numpy array, got {type(features).__name__}")
        if features.dtype.kind not in "fiub":  # as data_problem: complex would come back complex
            raise ConfigurationError(f"features must be real numbers, got dtype {features.dtype}")
        if features.ndim != 2 or features.shape[1] != self.mean.shape[0]:
            raise ConfigurationError(f"features of shape {features.shape} do not have {self.mean.shape[0]} columns")
        scaled: FloatArray = (features - self.mean) / np.where(self.std < MIN_STD, 1.0, self.std)
        return scaled


def local_moments(features: FloatArray) -> FloatArray:
    """The per-feature mean followed by the per-feature mean of squares of ``features``.

    Weighted by row counts, these average to the pooled moments, so a secure
    weighted mean of them gives the pooled mean and variance and nothing else.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ConfigurationError(f"moments need a non-empty 2-D feature array, got shape {features.shape}")
    moments: FloatArray = np.concatenate([features.mean(axis=0), (features * features).mean(axis=0)])
    return moments


def moments_quantization(num_clients: int, feature_bound: float, max_samples_per_client: int) -> dict[str, Any]:
    """Quantization options for aggregating :func:`local_moments` of features in ``[-feature_bound, feature_bound]``.

    Squares reach ``feature_bound^2``, which becomes the clip; the ring is
    Z_(2^64) and ``bits`` the most that cannot overflow for ``num_clients``
    clients of up to ``max_samples_per_client`` rows, so a feature with a small
    spread still gets its variance to a fraction of a percent.
    """
    if not (np.isfinite(feature_bound) and feature_bound > 0):
        raise ConfigurationError(f"feature_bound must be a positive number, got {feature_bound}")
    ring_bits = 64
    headroom = ((1 << (ring_bits - 1)) - 1) // (num_clients * max_samples_per_client)
    # The largest b with 2^(b-1) - 1 <= headroom, and at most 53: quantization runs in float64.
    bits = min(FLOAT64_BITS, headroom.bit_length())
    return {
        "clip": max(1.0, float(feature_bound) ** 2),
        "bits": bits,
        "ring_bits": ring_bits,
        "max_samples_per_client": max_samples_per_client,
        # The clip is the exact bound of a square: nothing to adapt (and a feature beyond
        # its bound is counted and reported, not silently clipped).
        "clipping": "fixed",
    }


def federated_standardiser(
    clients: Sequence[ClientData], aggregator: Aggregator, rng: np.random.Generator
) -> Standardiser:
    """The pooled standardisation of ``clients``, computed through ``aggregator``.

    Each client contributes its :func:`local_moments` weighted by its row count;
    nobody drops out of this setup round. Raises ConfigurationError if the
    aggregator could not complete it.
    """
    updates = [ClientUpdate(c.client_id, local_moments(c.features), c.num_samples) for c in clients]
    result = aggregator.aggregate(updates, {}, rng=rng)
    if result.mean is None:
        raise ConfigurationError(f"the standardisation round failed: {result.skipped_reason}")
    return Standardiser.from_moments(result.mean)


def make_federation(
    name: str,
    num_hospitals: int,
    *,
    partition: str = "dirichlet",
    alpha: float = 0.5,
    test_fraction: float = 0.3,
    rng: np.random.Generator,
) -> Federation:
    """Load ``name``, hold out a stratified test set, split the rest across hospitals.

    ``partition`` is ``"iid"`` or ``"dirichlet"`` (label skew with ``alpha``).
    Hospital ids are ``1..num_hospitals``. Features are raw: standardise them
    with :meth:`Federation.standardised` (e.g. by :func:`federated_standardiser`). An ``rng`` that
    is no ``numpy.random.Generator`` is refused (ConfigurationTypeError) before the data are loaded.
    """
    require_rng("rng", rng)
    if partition not in ("iid", "dirichlet"):
        raise ConfigurationError(f"partition must be 'iid' or 'dirichlet', got {partition!r}")
    features, labels = load_dataset(name)
    train, test = train_test_split(labels, test_fraction, rng)
    train_features, train_labels = features[train], labels[train]
    parts: Sequence[IntArray]
    if partition == "iid":
        parts = partition_iid(train.shape[0], num_hospitals, rng)
    else:
        # At least 10 rows per hospital, less when there are many hospitals for the data.
        min_rows = max(1, min(MIN_ROWS, train.shape[0] // (4 * num_hospitals)))
        parts = partition_dirichlet(train_labels, num_hospitals, alpha, rng, min_rows=min_rows)
    return Federation(
        name=name,
        clients=tuple(ClientData(i, train_features[rows], train_labels[rows]) for i, rows in enumerate(parts, start=1)),
        test_features=features[test],
        test_labels=labels[test],
        num_classes=int(labels.max()) + 1,
    )
