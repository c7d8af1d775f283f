"""A hospital's policy: what its node accepts, checked before anything that depends on its data leaves it.

The server proposes a round (mode, threshold, colluders, quantization, ...);
the node checks the proposal against its own :class:`NodePolicy` in the setup
stage, before it trains or sends anything derived from its data, and refuses
with the reason otherwise. The default policy is the safe one: active mode
only (a semi-honest round does not resist a server that lies about dropouts,
and the server is the party the protocol guards against, so the node, not the
server, decides whether to accept it), and no round whose computed guarantee
tolerates fewer colluding hospitals than the library's default configuration
for that round (:func:`default_colluders`, :func:`paillier_default_colluders`);
``NodePolicy(min_colluders=c)`` accepts fewer by name. A node takes part in a DP
round only if it keeps its DP budget in a state file (``dp-state-file``), which a new
run does not reset; ``NodePolicy(require_dp_state_file=False)`` accepts a budget per
run by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from secagg._validate import require_finite
from secagg.encoding import MAX_BITS, QuantizationConfig
from secagg.errors import ConfigurationError
from secagg.guarantee import Guarantee
from secagg.integrations.flower._round_binding import TRAIN
from secagg.masking import ACTIVE, MaskingConfig
from secagg.masking.config_record import COMPLETE
from secagg.masking.parameters import (
    COMPLETE_GRAPH_MAX_CLIENTS,
    complete_guarantee,
    complete_threshold,
    dropout_count,
)
from secagg.masking.parameters import default_colluders as _complete_default
from secagg.paillier.parameters import default_threshold, threshold_guarantee

__all__ = [
    "DEFAULT_MAX_NODES",
    "MAX_COUNT",
    "MAX_POLICY_CLIP",
    "MAX_SESSIONS_PER_ROUND",
    "SPARSE_CORRUPT_FRACTION",
    "NodePolicy",
    "default_colluders",
    "paillier_default_colluders",
]


MAX_COUNT = 1 << 16
"""The largest node, threshold or colluder count a policy can name (a round's node maximum)."""
DEFAULT_MAX_NODES = 1024
"""The default ceiling on a round's node count: a federation of hospitals counts tens to hundreds
of parties, so a setup naming more (up to the wire's 65536, a setup of megabytes) is refused unless
the node names a larger ``max_nodes`` (or None: the wire's maximum)."""
MAX_SESSIONS_PER_ROUND = 1024
"""The most sessions in one round a policy can accept (:attr:`NodePolicy.max_sessions_per_round`):
the ids a node remembers for a round, which it never forgets to make room for more."""
MAX_POLICY_CLIP = 1e12
"""The largest clip bound a policy can name."""
SPARSE_CORRUPT_FRACTION = 0.05
"""The corrupt fraction :meth:`MaskingConfig.secagg_plus` assumes by default on a Harary graph."""


def default_colluders(masking: MaskingConfig) -> int:
    """The colluders the library's default configuration of ``masking``'s round tolerates: the floor
    a node's default policy puts under the round's computed guarantee.

    Complete graph, and any graph of at most 100 nodes
    (:data:`~secagg.masking.parameters.COMPLETE_GRAPH_MAX_CLIENTS`, up to which the library's
    default, secagg+ included, is the complete graph): the guarantee of the default threshold for
    the round's node count and mode (:func:`~secagg.masking.parameters.complete_threshold` of
    :func:`~secagg.masking.parameters.default_colluders`: 3 nodes c = 0, 4 nodes c = 1, 5 nodes c = 2 in
    active mode). A server that puts so small a round on a Harary graph (c = ``floor(0.05 n)``: 0 at
    5 nodes) is below that default like one that lowers the threshold. Harary graph beyond 100 nodes
    (secagg+'s default there): ``floor(0.05 n)``, what the default corrupt fraction declares."""
    n, active = masking.num_clients, masking.mode == ACTIVE
    if masking.graph == COMPLETE or n <= COMPLETE_GRAPH_MAX_CLIENTS:
        return complete_guarantee(n, complete_threshold(n, _complete_default(n, active), active), active)[0]
    return dropout_count(n, SPARSE_CORRUPT_FRACTION)


def paillier_default_colluders(num_parties: int) -> int:
    """The colluders a key of ``num_parties`` shares dealt at the library's default threshold
    (:func:`~secagg.paillier.parameters.default_threshold`) tolerates with the default
    ``min_contributors`` (``max(2, t)``): 3 shares c = 0, 4 shares c = 1, 5 shares c = 2."""
    threshold = default_threshold(num_parties)
    return threshold_guarantee(num_parties, threshold, num_parties, max(2, threshold)).colluders


def _show(value: float) -> str:
    """``value`` short (``%g``) when that is exact, else every digit: a refusal at one past a bound
    must not read "1 exceeds this node's maximum 1"."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def _check_int(name: str, value: object, lowest: int, highest: int = MAX_COUNT) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise ConfigurationError(f"policy: {name} must be an int in {lowest}..{highest}, got {value!r}")


def _is_train_type(name: object) -> bool:
    """Whether ``name`` is a train message type Flower sends: ``train`` or ``train.<action>``, the
    action a Python identifier (``flwr.app.metadata.validate_message_type``)."""
    if not isinstance(name, str):
        return False
    category, dot, action = name.partition(".")
    return category == TRAIN and (not dot or action.isidentifier())


@dataclass(frozen=True)
class NodePolicy:
    """What a node accepts.

    Attributes:
        allow_semi_honest: accept semi-honest masking rounds (off by default: they
            do not resist a server that lies about dropouts).
        min_nodes: refuse rounds with fewer nodes.
        max_nodes: refuse rounds with more nodes (default :data:`DEFAULT_MAX_NODES`, 1024;
            None: the wire format's maximum). Checked on the setup's node list before any
            other work, and the node refuses, unread, a setup larger than an honest one of
            this many nodes.
        min_threshold: refuse masking sessions with a lower Shamir threshold.
        min_colluders: refuse rounds whose computed guarantee protects against fewer colluding
            hospitals (with the server) than this. None (the default): the library's default for
            the round (:func:`default_colluders` for masking: the default threshold of the round's
            node count and mode, on the complete graph up to 100 nodes whatever graph the server
            names, and secagg+'s Harary default beyond; :func:`paillier_default_colluders` for Paillier: a
            ``default_threshold(l)``-of-l key). An int names the floor: below the default
            (``min_colluders=0``) it accepts a setup the server weakened (a lower threshold, a
            smaller ``min_contributors``, a key dealt below the default), giving up resistance to
            that many colluding hospitals, as the refusal and the round's guarantee say.
        min_contributors: Paillier: refuse to decrypt sums of fewer uploads.
        max_clip: rounds without DP: refuse a clip above this, per coordinate (None: any): the
            quantization's clip (the encoding range) and every array's clip, what one hospital's
            update can move a coordinate by. It never bounds a DP round (:attr:`max_l2_clip` does).
        max_l2_clip: DP rounds: refuse a plan whose per-patient L2 clip ``l2_clip`` (the
            sensitivity the noise is calibrated to, an L2 norm over the whole update) is above
            this (None: any). A DP round's quantization clip is its encoding range, that clip
            times the round's ``max_weight`` plus room for the noise, held by the range and
            overflow checks; no limit here bounds it. It never bounds a round without DP.
            The two limits are in two units, so a node that names one and not the other refuses
            the rounds the other would bound, naming the field to set: a policy with only
            ``max_clip`` refuses DP rounds, one with only ``max_l2_clip`` rounds without DP (a
            node that bounds neither accepts any clip; ``require_dp`` refuses rounds without DP).
        min_bits: refuse quantization with fewer bits per value (None: any).
        require_dp: refuse a round without distributed differential privacy (and, with it, a
            mod built with ``allow_plain_train=True`` is refused: a plain training reply is the
            node's update in the clear; the mods refuse evaluate and query messages too, their
            replies un-noised and uncharged, unless built with ``allow_plain_evaluate`` /
            ``allow_plain_query``, and Flower's legacy ``get_parameters`` / ``get_properties``
            messages, with no opt-in).
        max_dp_epsilon: refuse a DP round whose declared epsilon (per patient, whole run)
            is above this ceiling (None: any). The node also recomputes the epsilon the
            round's noise buys and refuses a setup whose noise does not buy the declared one.
        max_dp_delta: refuse a DP round whose delta is above this (None: any).
        require_dp_state_file: refuse a DP round unless this node keeps its own DP budget in a
            state file (the mod's ``dp_state_file`` or the node config's ``dp-state-file``), at
            setup, before it trains or charges anything (on by default, for every DP round
            whatever :attr:`require_dp` says; rounds without DP are unaffected). Without one the
            budget lives in ``context.state``, which a restart or a new run forgets.
            ``NodePolicy(require_dp_state_file=False)`` opts out by name and gives up a budget
            across runs: the node's budget is then one run's, which a server resets by starting
            a new run (or a node restart does), and so can collect the hospital's whole epsilon
            again, run after run.
        min_noise_multiplier: refuse a DP round whose honest noise ``sqrt(h sigma^2)``
            is below this multiple of the integer sensitivity Delta2 (None: any): the
            floor on the per-node noise a hospital accepts, whatever the server declares.
        require_run_config: refuse a round that binds no run config digest (the server's
            ``run_config`` option; :mod:`~secagg.integrations.flower.run_binding`). A bound digest
            other than that of the node's own ``context.run_config`` is refused whatever this says.
        train_message_types: the Flower message types this node takes part in secure rounds of
            (default: plain ``"train"`` only). A ``train.<action>`` message runs the app's
            ``@app.train("<action>")`` handler, so the type picks how the node trains; a round of
            another type is refused at setup (:meth:`check_train_message_type`), before the node
            trains or charges its DP budget, whatever the setup says (a lying coordinator names the
            type in the setup too). Other types are accepted by name, e.g.
            ``NodePolicy(train_message_types=("train", "train.finetune"))``; each is ``"train"`` or
            ``"train.<action>"`` with a Python identifier for action (the only train types Flower
            sends), named once.
        allow_repeat_model: send more than one contribution (masked input, Paillier upload) for
            one model, the model digest a round binds. Off by default: a node refuses, before it
            trains, a session over a model it already sent a contribution for (ReplayError), since
            two sums over one model whose node sets differ by one hospital are, without DP, that
            hospital's update (its training is deterministic). On, it gives up that protection:
            a server that resends a model gets as many sums of it as this node takes part in.
            (:mod:`~secagg.integrations.flower._contributions`.)
        max_sessions_per_round: how many sessions the node takes part in within one round (masking
            setups it answers, Paillier uploads), 1 by default (an honest server runs one per round),
            at most :data:`MAX_SESSIONS_PER_ROUND`; one more is refused (ReplayError) before it
            trains. More gives up: a server that runs several sessions in one round over
            different node sets gets several sums of that round (over one model, unless
            :attr:`allow_repeat_model` is on, only one of them holds this node's contribution).
    """

    allow_semi_honest: bool = False
    min_nodes: int = 3
    max_nodes: int | None = DEFAULT_MAX_NODES
    min_threshold: int = 2
    min_colluders: int | None = None
    min_contributors: int = 2
    max_clip: float | None = None
    max_l2_clip: float | None = None
    min_bits: int | None = None
    require_dp: bool = False
    max_dp_epsilon: float | None = None
    max_dp_delta: float | None = None
    min_noise_multiplier: float | None = None
    require_dp_state_file: bool = True
    require_run_config: bool = False
    train_message_types: tuple[str, ...] = ("train",)
    allow_repeat_model: bool = False
    max_sessions_per_round: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.allow_semi_honest, bool):
            raise ConfigurationError("policy: allow_semi_honest must be a bool")
        _check_int("min_nodes", self.min_nodes, 2)
        if self.max_nodes is not None:
            _check_int("max_nodes", self.max_nodes, self.min_nodes)
        _check_int("min_threshold", self.min_threshold, 2)
        if self.min_colluders is not None:
            _check_int("min_colluders", self.min_colluders, 0)
        _check_int("min_contributors", self.min_contributors, 2)
        for name, limit in (("max_clip", self.max_clip), ("max_l2_clip", self.max_l2_clip)):
            if limit is not None and require_finite(f"policy: {name}", limit, 0.0, MAX_POLICY_CLIP) <= 0:
                raise ConfigurationError(f"policy: {name} must be positive, got {limit}")
        if self.min_bits is not None:
            _check_int("min_bits", self.min_bits, 2, MAX_BITS)
        _check_int("max_sessions_per_round", self.max_sessions_per_round, 1, MAX_SESSIONS_PER_ROUND)
        for flag in ("require_dp", "require_dp_state_file", "require_run_config", "allow_repeat_model"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigurationError(f"policy: {flag} must be a bool")
        for name, value, high in (("max_dp_epsilon", self.max_dp_epsilon, 1000.0),
                                  ("max_dp_delta", self.max_dp_delta, 1.0),
                                  ("min_noise_multiplier", self.min_noise_multiplier, 1e6)):  # fmt: skip
            if value is not None and not require_finite(f"policy: {name}", value, 0.0, high) > 0.0:
                raise ConfigurationError(f"policy: {name} must be positive, got {value}")
        types = self.train_message_types
        if not isinstance(types, tuple) or not types or not all(map(_is_train_type, types)):
            raise ConfigurationError(
                f"policy: train_message_types must be a non-empty tuple of 'train' or 'train.<action>' strings, "
                f"the action a Python identifier (the only train types Flower sends), got {types!r}"
            )
        if len(set(types)) != len(types):
            twice = next(t for t in types if types.count(t) > 1)
            raise ConfigurationError(f"policy: train_message_types names {twice!r} twice, got {types!r}")

    def check_nodes(self, num_nodes: int) -> None:
        """ConfigurationError if a round of ``num_nodes`` nodes is above :attr:`max_nodes` (checked
        on a setup's node list before anything else)."""
        if self.max_nodes is not None and num_nodes > self.max_nodes:
            raise ConfigurationError(
                f"policy: round of {num_nodes} nodes, this node accepts at most {self.max_nodes} (max_nodes)"
            )

    def check_train_message_type(self, message_type: str) -> None:
        """ConfigurationError unless ``message_type``, the type of the message a secure round's setup
        came in (the setup binds it), is one of :attr:`train_message_types`: checked at setup, before
        the node trains or charges anything."""
        if message_type not in self.train_message_types:
            raise ConfigurationError(
                f"policy: a secure round of {message_type!r} messages, but this node trains only for "
                f"{', '.join(map(repr, self.train_message_types))} (train_message_types): the message type picks "
                "the app's train handler, and the setup naming it is the server's word; accept it by name, "
                f"NodePolicy(train_message_types=({', '.join(map(repr, (*self.train_message_types, message_type)))}))"
            )

    def check_dp_state_file(self, path: str | None) -> None:
        """ConfigurationError if :attr:`require_dp_state_file` and a DP round's budget has no state
        file (``path`` None): checked at setup, before the node trains."""
        if self.require_dp_state_file and path is None:
            raise ConfigurationError(
                "policy: a DP round, but this node keeps no DP budget file (dp-state-file): its budget "
                "would live in context.state, which a restart or a new run forgets, so a server could "
                "collect its budget again by starting a new run; set the node config's dp-state-file "
                "(or the mod's dp_state_file), or opt out by name, NodePolicy(require_dp_state_file=False), "
                "for a budget per run"
            )

    def check_round(
        self, num_nodes: int, guarantee: Guarantee, quantization: QuantizationConfig, default: int, *,
        dp: bool = False,
    ) -> None:
        """ConfigurationError naming the rule a round of ``num_nodes`` with this guarantee and
        quantization breaks (what every protocol shares); ``default`` is the colluders the library's
        default configuration of the round tolerates (:meth:`check_colluders`). ``dp``: the round is
        a DP round, whose quantization clip is its encoding range, not a clip: :attr:`max_l2_clip`
        bounds its plan's ``l2_clip`` instead (:meth:`check_dp_clip`, when the plan is read), and
        :attr:`max_clip` does not apply. Without DP the quantization's clip is bounded by
        :attr:`max_clip`, and a node that names only :attr:`max_l2_clip` refuses the round."""
        if num_nodes < self.min_nodes:
            raise ConfigurationError(f"policy: round of {num_nodes} nodes, this node requires {self.min_nodes}")
        self.check_colluders(guarantee, default)
        if not dp and self.max_clip is None and self.max_l2_clip is not None:
            raise ConfigurationError(
                f"policy: a round without DP (clip {_show(quantization.clip)} per coordinate), but this node names "
                f"no max_clip: its max_l2_clip {_show(self.max_l2_clip)} bounds DP rounds only (a per-patient L2 "
                "norm, not a clip per coordinate); name NodePolicy(max_clip=...) to accept rounds without DP"
            )
        if not dp and self.max_clip is not None and quantization.clip > self.max_clip:
            raise ConfigurationError(f"policy: clip {quantization.clip} exceeds this node's maximum {self.max_clip}")
        if self.min_bits is not None and quantization.bits < self.min_bits:
            raise ConfigurationError(f"policy: {quantization.bits} bits per value, this node requires {self.min_bits}")

    def check_dp_clip(self, l2_clip: float) -> None:
        """ConfigurationError if a DP round's per-patient L2 clip ``l2_clip`` is above
        :attr:`max_l2_clip`, or if the node names only :attr:`max_clip` (a limit per coordinate,
        for rounds without DP: it is not read as an L2 bound, nor dropped without a word)."""
        if self.max_l2_clip is None and self.max_clip is not None:
            raise ConfigurationError(
                f"policy: a DP round (per-patient l2_clip {_show(l2_clip)}), but this node names no max_l2_clip: "
                f"its max_clip {_show(self.max_clip)} bounds rounds without DP only (a clip per coordinate, not a "
                "per-patient L2 norm); name NodePolicy(max_l2_clip=...) to accept DP rounds"
            )
        if self.max_l2_clip is not None and l2_clip > self.max_l2_clip:
            raise ConfigurationError(
                f"policy: the DP round's per-patient l2_clip {_show(l2_clip)} exceeds this node's maximum "
                f"{_show(self.max_l2_clip)} (max_l2_clip)"
            )

    def check_colluders(self, guarantee: Guarantee, default: int) -> None:
        """ConfigurationError if the round's computed ``guarantee`` tolerates fewer colluding hospitals
        than :attr:`min_colluders`, or (None, the default) than ``default``, the library's default
        configuration of the round; the refusal names the opt-in by name and what it gives up."""
        if self.min_colluders is not None:
            if guarantee.colluders < self.min_colluders:
                raise ConfigurationError(
                    f"policy: the round protects against {guarantee.colluders} colluding hospitals, "
                    f"this node requires {self.min_colluders} ({guarantee})"
                )
            return
        if guarantee.colluders < default:
            most = max(0, guarantee.colluders)
            raise ConfigurationError(
                f"policy: the round protects against {guarantee.colluders} colluding hospitals, below the "
                f"library default of {default} for this round ({guarantee}); this node accepts it only by name, "
                f"NodePolicy(min_colluders={most}), giving up resistance to {default - most} of the {default} "
                "colluding hospitals the default resists"
            )

    def check_masking(self, threshold: int, guarantee: Guarantee) -> None:
        """The masking-only rules: the mode and the threshold."""
        if not guarantee.lying_server and not self.allow_semi_honest:
            raise ConfigurationError(
                "policy: a semi-honest round does not resist a server that lies about dropouts; "
                "this node accepts active mode only (NodePolicy(allow_semi_honest=True) to opt in)"
            )
        if threshold < self.min_threshold:
            raise ConfigurationError(f"policy: threshold {threshold}, this node requires {self.min_threshold}")

    def check_paillier(self, min_contributors: int) -> None:
        """The Paillier-only rule: the fewest uploads this node decrypts the sum of."""
        if min_contributors < self.min_contributors:
            raise ConfigurationError(
                f"policy: min_contributors {min_contributors}, this node requires {self.min_contributors}"
            )
