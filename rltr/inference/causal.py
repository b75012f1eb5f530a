"""``with reducer(model, budget=0.5, protect_last=8): model.generate(...)``: token reduction in a plain
HF causal LM's prompt pass, as kvpress does for KV presses.

While the context is active the model's ``forward`` is replaced (an instance attribute, removed on exit,
also after an exception) by a dispatcher:

* **prefill** (no cache, or an empty ``DynamicCache``): the prompt runs through the family adapter layer
  by layer with the reducer acting before the decision layers (:func:`~rltr.inference.prefill.reduced_prefill`);
  dropped tokens are not computed in later layers, merged ones are computed once, and the cache holds
  only the final token set, at every layer. Query-agnostic (``query_aware=False``) the prompt pass is
  two-phase (:mod:`rltr.inference.two_phase`): the context is reduced alone, then the tail (the last
  ``protect_last`` tokens, or the task's question) runs on its cache, so no tail token reads a dropped one.
* **decode** (a cache this context filled): the model's own forward runs on the new tokens with a 4D
  additive mask over [cached prompt slots | generated tokens]: log(size) on merged prompt slots
  (proportional attention persists), masked dead slots, causal among generated tokens; position ids
  continue from the ORIGINAL prompt length.
* anything else (e.g. a non-empty cache filled without reduction) goes to the original forward.

Sliding-window models (Mistral, Qwen2/3 with ``use_sliding_window``): while prompt + generated tokens stay
shorter than the window it masks nothing, and the reduced cache (sliding-window cache layers included) is
exact; a prompt or a decode step that reaches the window is refused naming it, since a cache cut by slot
cannot give sliding semantics by position.

Deviation from the prefill's own attention: layers *before* a decision saw every prompt token during
the prompt pass, but their cache keeps only the final token set (the same slots at every layer), so
generated tokens attend to the reduced prompt at every layer. A merged slot's cache entry at those early
layers is the size-weighted mean of its group's keys/values there (with the log(size) bias), i.e. the
merge applied to that layer's cache.
"""

from __future__ import annotations

import weakref

import torch
from transformers.cache_utils import DynamicCache

from rltr.core.contracts import DecisionMaker
from rltr.inference.cache import check_window
from rltr.inference.forward_patch import DEFAULT_BUDGET, ForwardPatch, _DefaultBudget, named_arguments
from rltr.inference.hf_compat import cache_argument, causal_lm_output, take_cache, version_hint
from rltr.inference.prefill import PrefixInfo, PromptHints, prompt_logits, reduced_prefill
from rltr.inference.two_phase import continuation_mask, two_phase_prefill


class TokenReduction(ForwardPatch):
    """Context manager applying ``reducer`` to ``model``'s prompt pass (``forward`` and ``generate()``).

    budget:          fraction of prompt tokens to keep, in (0, 1] (None: the reducer's own choice; default
                     0.5, or None for a reducer that sets its own token counts, e.g. ``tome:r=8``).
    protect_last:    the last K real prompt tokens (the question tail) are never removed; they are the
                     "query" of query-aware reducers. >= 1, so the last token always gives logits.
    protect_first:   the first K tokens are protected too (BOS / attention sinks); default 0.
    decision_layers: layers before which the reducer acts; default: a router's own, else [1].
    query_aware:     default: a router's own setting, else True.
    seed:            seed of the generator random reducers draw from (one per prompt pass).
    bucket:          after a decision, run rows of very different lengths in buckets of similar length
                     (:mod:`rltr.inference.buckets`): the batch costs what its rows kept. Default True.

    ``last`` is the :class:`PrefixInfo` of the latest prompt pass (kept positions, sizes, counts).
    While active, the model's forward also takes ``reduction_hints=PromptHints(...)`` on a prompt pass:
    per-row tails, extra protected tokens and the oracle's relevant tokens (how evaluation runs task
    examples through this same path).
    """

    last: PrefixInfo | None

    def __init__(
        self,
        model,
        reducer: DecisionMaker,
        *,
        budget: float | _DefaultBudget | None = DEFAULT_BUDGET,
        protect_last: int = 1,
        protect_first: int = 0,
        decision_layers: list[int] | None = None,
        query_aware: bool | None = None,
        seed: int = 0,
        bucket: bool = True,
    ):
        if not isinstance(protect_last, int) or protect_last < 1:
            raise ValueError(f"protect_last must be an int >= 1 (the last prompt token must survive), got {protect_last!r}")
        if not isinstance(protect_first, int) or protect_first < 0:
            raise ValueError(f"protect_first must be an int >= 0, got {protect_first!r}")
        super().__init__(
            model, reducer, budget=budget, decision_layers=decision_layers, query_aware=query_aware, seed=seed, default_layers=[1]
        )
        self.protect_last, self.protect_first, self.bucket = protect_last, protect_first, bucket
        self._prefixes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # cache -> PrefixInfo

    def __repr__(self) -> str:
        return (
            f"TokenReduction({self.reducer!r}, budget={self.budget}, protect_last={self.protect_last}, "
            f"decision_layers={self.decision_layers})"
        )

    def _forward(self, original, sig, args: tuple, kwargs: dict):
        """Prefill (no cache, or an empty one) -> reduced prompt pass; decode of a cache this context filled ->
        the original forward with the reduced prompt's mask; anything else -> the original forward.
        The cache is read under either of transformers' names and handed on under the one ``original`` takes."""
        reduction_hints: PromptHints | None = kwargs.pop("reduction_hints", None)
        named = named_arguments(sig, args, kwargs)
        cache = take_cache(named)
        prefill = cache is None or (cache not in self._prefixes and cache.get_seq_length() == 0)
        if reduction_hints is not None and not prefill:
            raise ValueError("reduction_hints describe a prompt; this call continues a cache")
        if cache is not None and cache in self._prefixes:
            return original(**self._decode_inputs(named, cache, self._prefixes[cache]), **{cache_argument(original): cache})
        if prefill:
            return self._prefill(named, cache, reduction_hints, original)
        return original(**named, **{cache_argument(original): cache})

    # ---- the two passes -----------------------------------------------------------------------
    def _prefill(self, named: dict, cache, hints: PromptHints | None = None, original=None):
        """Reduced prompt pass: (B, L) input_ids -> logits at the kept columns + the filled cache. Query-agnostic
        on a causal model it is two-phase (:mod:`rltr.inference.two_phase`): the context reduced alone, then the
        tail on its cache through ``original`` (the model's own forward)."""
        check_prefill_arguments(named)
        for name in ("inputs_embeds", "labels"):
            if named.get(name) is not None:
                raise ValueError(f"{name} is not supported under token reduction; pass input_ids")
        input_ids = named.get("input_ids")
        if input_ids is None:
            raise ValueError("token reduction needs input_ids for the prompt pass")
        use_cache = named.get("use_cache")
        use_cache = self.model.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.model.config)
        _check_positions(named.get("position_ids"), named.get("attention_mask"), input_ids)
        keep = 0 if named.get("logits_to_keep") is None else named["logits_to_keep"]
        cache = cache if use_cache else None
        common = dict(
            budget=self.budget,
            decision_layers=self.decision_layers,
            protect_last=self.protect_last,
            protect_first=self.protect_first,
            cache=cache,
            generator=torch.Generator(device="cpu").manual_seed(self.seed),
            hints=hints,
            bucket=self.bucket,
        )
        ids, mask = input_ids, named.get("attention_mask")
        if not self.query_aware and self.backbone.causal:
            if original is None:
                raise ValueError("a query-agnostic prompt pass runs its tail through the model's own forward: pass original")
            logits, info = two_phase_prefill(self.backbone, self.reducer, original, ids, mask, logits_to_keep=keep, **common)
        else:
            state, info, order = reduced_prefill(self.backbone, self.reducer, ids, mask, query_aware=self.query_aware, **common)
            logits = prompt_logits(self.backbone, state, order, keep)
        return self._prompt_output(logits, info, cache, named)

    def _prompt_output(self, logits: torch.Tensor, info: PrefixInfo, cache, named: dict):
        """The prompt pass's HF output; ``info`` becomes :attr:`last` and describes ``cache`` (if any) to decode steps."""
        self.last = info
        if cache is not None:
            self._prefixes[cache] = info
        out = causal_lm_output(logits, cache)
        return out if named.get("return_dict", True) is not False else out.to_tuple()

    def _decode_inputs(self, named: dict, cache, info: PrefixInfo) -> dict:
        """The original forward's inputs for new tokens after a reduced prompt: a 4D additive mask
        (B, 1, q, N_f + t) over [prompt slots | generated tokens] and position ids from the original length."""
        input_ids = named.get("input_ids")
        if input_ids is None:
            raise ValueError("a decode step after a reduced prompt needs input_ids")
        b, q = input_ids.shape
        if b != info.alive.shape[0]:
            raise ValueError(f"batch of {b} rows continues a reduced cache of {info.alive.shape[0]} rows")
        n_prefix = info.alive.shape[1]
        n_gen = cache.get_seq_length() - n_prefix + q  # generated tokens incl. these new ones
        check_window(info.window, int(info.next_position.max()) + n_gen)
        device = info.key_bias.device
        mask2d = named.get("attention_mask")
        gen_ok = torch.ones(b, n_gen, dtype=torch.bool, device=device)
        if mask2d is not None and mask2d.ndim == 2 and mask2d.shape[1] == info.n_columns + n_gen:
            gen_ok = mask2d[:, info.n_columns :].to(device).bool()
        named["attention_mask"] = continuation_mask(info.key_bias, gen_ok, q)  # (B, 1, q, N_f + n_gen)
        positions = (info.next_position[:, None] + n_gen - q + torch.arange(q, device=device)).to(input_ids.device)
        given = named.get("position_ids")
        if given is not None and not torch.equal(given.to(positions.device).expand_as(positions), positions):
            raise ValueError(
                f"decode position ids {given.tolist()} differ from the original prompt's continuation {positions.tolist()} "
                "(positions after a reduced prompt count the ORIGINAL prompt's tokens)"
            )
        named["position_ids"] = positions
        return named


def _check_positions(position_ids, attention_mask, input_ids) -> None:
    """Reduction derives positions from the attention mask (0, 1, ... over real tokens, as ``generate()``
    does); custom position ids would be silently ignored, so they are refused."""
    if position_ids is None:
        return
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.device).long()
    expected = (mask.cumsum(-1) - 1).clamp_min(0)
    if not torch.equal(position_ids.to(input_ids.device).expand_as(expected) * mask, expected * mask):
        raise ValueError("custom position_ids are not supported under token reduction (positions follow the attention mask)")


# What a causal LM's forward may receive in a prompt pass: everything else means a transformers version whose
# forward protocol rltr has not been checked on (a renamed or new argument), which must not be silently dropped.
_KNOWN_PREFILL_ARGUMENTS = frozenset(
    {
        "input_ids",
        "attention_mask",
        "position_ids",
        "inputs_embeds",
        "labels",
        "use_cache",
        "logits_to_keep",
        "return_dict",
        "output_attentions",
        "output_hidden_states",
        "cache_position",
        "token_type_ids",
    }
)


def check_prefill_arguments(named: dict) -> None:
    """Refuse a prompt-pass argument rltr does not know (given, not None), naming the transformers version."""
    unknown = sorted(k for k, v in named.items() if v is not None and v is not False and k not in _KNOWN_PREFILL_ARGUMENTS)
    if unknown:
        raise ValueError(
            f"the patched forward received arguments it does not know: {unknown}. They come from {version_hint()}; "
            "install a tested version (make install uses requirements/lock.txt) or report it"
        )
