"""``NodePolicy.train_message_types``: the message types a node takes part in secure rounds of.

The round-level tests (a lying coordinator that names another type in the setup too, refused at
setup before training or any charge) are in tests/integrations/test_integrations_flower_action_binding.py,
..._paillier_action_binding.py and ..._paillier_dp_action_binding.py. These check the field's
own refusals: a value that would read a type by substring (a bare string) or name no type, a
category other than train, a type Flower never sends (an action that is not a Python identifier)
or a type named twice, is refused when the policy is made; a type is matched whole.
"""

from __future__ import annotations

import pytest
from flwr.app.metadata import validate_message_type

from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy


@pytest.mark.parametrize(
    "types",
    ["train", ("train", b"train.zero"), (), ["train"], ("evaluate",), ("train.",), ("training",), None],
    ids=["bare-str", "bytes", "empty", "list", "evaluate", "no-action", "not-a-train-type", "none"],
)
def test_a_policy_naming_train_types_it_cannot_match_whole_is_refused(types: object) -> None:
    with pytest.raises(ConfigurationError, match="train_message_types must be"):
        NodePolicy(train_message_types=types)  # type: ignore[arg-type]


def test_the_default_accepts_plain_train_only_and_a_type_is_matched_whole() -> None:
    assert NodePolicy().train_message_types == ("train",)
    NodePolicy().check_train_message_type("train")
    for sent in ("train.zero", "trai", ""):
        with pytest.raises(ConfigurationError, match=r"train_message_types.*NodePolicy\(train_message_types="):
            NodePolicy().check_train_message_type(sent)
    named = NodePolicy(train_message_types=("train", "train.zero"))
    named.check_train_message_type("train.zero")
    with pytest.raises(ConfigurationError, match=r"'train\.zer'"):
        named.check_train_message_type("train.zer")


@pytest.mark.parametrize(
    "types",
    [("train", "train.fine-tune"), ("train.a.b",), ("train", "train.zero "), ("train", "train.1x"), ("train.zéro?",)],
    ids=["hyphen", "two-dots", "trailing-space", "leading-digit", "not-an-identifier"],
)
def test_a_policy_naming_a_type_flower_never_sends_is_refused(types: tuple[str, ...]) -> None:
    # Flower sends a train.<action> message only for an action that is a Python identifier
    # (flwr.app.metadata.validate_message_type): a policy naming any other would accept a type that
    # never comes, so the operator's opt-in would silently match nothing.
    with pytest.raises(ConfigurationError, match=r"train_message_types must be.*Python identifier"):
        NodePolicy(train_message_types=types)


@pytest.mark.parametrize("types", [("train", "train"), ("train", "train.zero", "train.zero")], ids=["train", "action"])
def test_a_policy_naming_a_type_twice_is_refused(types: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError, match=r"train_message_types names .* twice"):
        NodePolicy(train_message_types=types)


def test_every_type_a_policy_accepts_is_one_flower_sends() -> None:
    # The rule the policy applies is Flower's own, for the train category.
    for name in ("train", "train.zero", "train.fine_tune", "train._x", "train.Zero2"):
        assert validate_message_type(name)
        NodePolicy(train_message_types=(name,)).check_train_message_type(name)
