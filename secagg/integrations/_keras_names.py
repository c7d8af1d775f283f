"""The Keras adapter's weight names: variable paths, with Keras's automatic names made stable.

A weight's identity is its variable path inside the model (``"dense/kernel"``,
``"encoder/attention/query/kernel"``): the layout binds it, so two hospitals whose
same-shaped weights come in another order fail the round instead of summing one
weight into another. Keras names a layer or variable created without a name
automatically: its class in snake case and a process-wide counter (``dense``,
``dense_1``, ..., ``variable_3``), so the same architecture built twice in one
process, or after another model in a second process, gets other paths.

The rule (:func:`stable_paths`): the model's own name is dropped from the front of
every path; then, scope by scope from the left, a path component of the automatic form
(a layer class's snake-case name, or ``variable``, alone or followed by ``_<digits>``;
or such a name after ``forward_`` or ``backward_``, the names ``Bidirectional`` gives its
two copies of the layer it wraps: ``forward_lstm_4``, whose form is ``forward_lstm``)
is renumbered from zero in weight order among the automatic components of that form
in the same (renumbered) scope: the first is ``dense``, the next ``dense_1``, as a
fresh process would name them. Every other component (an explicit name such as
``"encoder"`` or ``"left"``, and variable names such as ``kernel``) is kept as given.
So automatic names bind position only (two layers created in the other order get each
other's automatic names, and nothing can tell them apart); give the layers whose order
may differ between hospitals explicit names, and those names are bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from secagg.errors import ConfigurationError

__all__ = ["automatic_prefixes", "snake_case", "stable_paths", "weight_names"]

_NUMBERED = re.compile(r"(.+)_([0-9]+)")
_BIDIRECTIONAL_COPIES = ("forward_", "backward_")
"""Keras's ``Bidirectional`` names its two copies of the wrapped layer so: ``forward_lstm_4``."""


def snake_case(name: str) -> str:
    """A class name as Keras makes it an automatic name (``keras.src.utils.naming.to_snake_case``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def automatic_prefixes(model: Any, variables: Iterable[Any]) -> frozenset[str]:
    """The snake-case class names of ``model``, every layer inside it and ``variables``."""
    layers = model._flatten_layers(include_self=True, recursive=True)  # Keras 3's own walk
    classes = {type(obj).__name__ for obj in (*layers, *variables)}
    return frozenset({"variable", *(snake_case(name) for name in classes)})


def _plain_form(component: str, prefixes: frozenset[str]) -> str | None:
    if component in prefixes:
        return component
    numbered = _NUMBERED.fullmatch(component)
    return numbered.group(1) if numbered and numbered.group(1) in prefixes else None


def _automatic_form(component: str, prefixes: frozenset[str]) -> str | None:
    """The automatic form ``component`` has (``dense`` for ``dense_3``, ``forward_lstm`` for
    ``forward_lstm_2``), or None for a name given explicitly."""
    form = _plain_form(component, prefixes)
    if form is not None:
        return form
    for copy in _BIDIRECTIONAL_COPIES:
        if component.startswith(copy):
            wrapped = _plain_form(component.removeprefix(copy), prefixes)
            return None if wrapped is None else copy + wrapped
    return None


def stable_paths(model_name: str, paths: Sequence[str], prefixes: frozenset[str]) -> list[str]:
    """``paths`` (in weight order) under the rule of the module docstring."""
    numbers: dict[tuple[str, str], dict[str, int]] = {}
    out = []
    for path in paths:
        scope = ""
        for component in path.removeprefix(f"{model_name}/").split("/"):
            form = _automatic_form(component, prefixes)
            stable = component
            if form is not None:
                seen = numbers.setdefault((scope, form), {})
                number = seen.setdefault(component, len(seen))
                stable = form if number == 0 else f"{form}_{number}"
            scope = f"{scope}/{stable}" if scope else stable
        out.append(scope)
    return out


def weight_names(model: Any, variables: Sequence[Any]) -> list[str]:
    """The variables' stable paths inside ``model`` (:func:`stable_paths`),
    numbered over all the model's weights: a trainable subset keeps each weight's full-model name,
    so two hospitals that froze different same-shaped layers send differently named weights."""
    everything = list(model.weights)
    paths = stable_paths(str(model.name), [str(v.path) for v in everything], automatic_prefixes(model, everything))
    names = {id(v): path for v, path in zip(everything, paths, strict=True)}
    if any(id(v) not in names for v in variables):
        raise ConfigurationError("a trainable weight of the model is not among its weights")
    return [names[id(v)] for v in variables]
