"""What LLM work cost: calls, cached answers, re-asks, tokens and dollars, as one `Usage`.

Every counter doxa keeps (an extraction's outcome, an ingest's result, the CLI's totals, a
backfill's, a Ray run's, an eval case's, the LLM judge's) sums `Usage` values with `+`, so the
rules of summing are written once, here: above all, a cost is None (unknown) as soon as any
part of it had no known price. A total that quietly left the unpriced part out would look
like a real price and be a wrong one.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict


class Usage(BaseModel):
    """What some LLM work cost; `cost_usd` is None when some call's price is unknown."""

    model_config = ConfigDict(frozen=True)

    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    cache_hits: int = 0
    """Answers taken from the response cache: no call, no tokens."""
    latency_s: float = 0.0
    dropped: int = 0
    """Proposed records dropped as invalid after re-asking."""
    calling_batches: int | None = None
    """Batches that called the LLM (signal, and not answered from the cache); None where it
    was not counted (run files written before it was)."""
    reasks: int | None = None
    """Calls after a calling batch's first: re-asks of invalid answers (instructor's, for an
    answer that does not parse; doxa's targeted ones, for records whose evidence fails);
    None where it was not counted."""
    repairs: int | None = None
    """Evidence doxa mended instead of re-asking (`doxa.llm.evidence`): quotes replaced by
    their event's exact span, citations re-pointed or trimmed; None where not counted."""
    reask_input_tokens: int | None = None
    """Of `input_tokens`, those the re-asks sent; None where not counted."""
    reask_output_tokens: int | None = None
    """Of `output_tokens`, those the re-asks answered; None where not counted."""
    why_calls: int | None = None
    """Of `llm_calls`, those the why pass made (`doxa.llm.why`, opt-in); None where not
    counted."""
    why_input_tokens: int | None = None
    """Of `input_tokens`, those the why pass sent; None where not counted."""
    why_output_tokens: int | None = None
    """Of `output_tokens`, those the why pass answered; None where not counted."""
    cached_calls: int | None = None
    """The calls the `cache_hits` answers took when they were first asked (re-asks
    included): not made again, and not in `llm_calls`; None where not counted."""
    cached_input_tokens: int | None = None
    """The input tokens those calls sent when first asked (not in `input_tokens`): what
    the cached answers cost, reported rather than shown as zero; None where not counted."""
    cached_output_tokens: int | None = None
    """The output tokens those calls answered when first asked (not in `output_tokens`)."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            llm_calls=self.llm_calls + other.llm_calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=add_costs(self.cost_usd, other.cost_usd),
            cache_hits=self.cache_hits + other.cache_hits,
            latency_s=self.latency_s + other.latency_s, dropped=self.dropped + other.dropped,
            calling_batches=_plus(self.calling_batches, other.calling_batches),
            reasks=_plus(self.reasks, other.reasks),
            repairs=_plus(self.repairs, other.repairs),
            reask_input_tokens=_plus(self.reask_input_tokens, other.reask_input_tokens),
            reask_output_tokens=_plus(self.reask_output_tokens, other.reask_output_tokens),
            why_calls=_plus(self.why_calls, other.why_calls),
            why_input_tokens=_plus(self.why_input_tokens, other.why_input_tokens),
            why_output_tokens=_plus(self.why_output_tokens, other.why_output_tokens),
            cached_calls=_plus(self.cached_calls, other.cached_calls),
            cached_input_tokens=_plus(self.cached_input_tokens, other.cached_input_tokens),
            cached_output_tokens=_plus(self.cached_output_tokens, other.cached_output_tokens),
        )


FLAT_COUNTS = ("llm_calls", "input_tokens", "output_tokens", "cost_usd", "cache_hits",
               "reasks", "repairs", "reask_input_tokens", "reask_output_tokens", "why_calls",
               "why_input_tokens", "why_output_tokens", "cached_calls", "cached_input_tokens",
               "cached_output_tokens")
"""The counts a result may show as fields of its own (`FlatUsage`)."""


class FlatUsage(BaseModel):
    """A model that shows some of `Usage`'s counts as fields of its own, summed as a `Usage`.

    An ingest's result, a Ray run's summary and a backfill's totals are JSON contracts (the
    API schema, the CLI's `--json`, the resume file), so their counts cannot move into a
    nested `usage`; they are read and added through `Usage` all the same, so every sum
    follows its rules. A subclass declares any of `FLAT_COUNTS` among its fields."""

    @property
    def usage(self) -> Usage:
        """This model's counts as a `Usage` (those it does not show are 0)."""
        return Usage(**{name: getattr(self, name) for name in self._counted()})

    def count(self, usage: Usage) -> None:
        """Add `usage` to the counts this model shows."""
        total = self.usage + usage
        for name in self._counted():
            setattr(self, name, getattr(total, name))

    @classmethod
    def _counted(cls) -> tuple[str, ...]:
        return tuple(name for name in FLAT_COUNTS if name in cls.model_fields)


def add_costs(a: float | None, b: float | None) -> float | None:
    """Two costs summed; None (unknown) when either is: an unknown price is not a free one."""
    return None if a is None or b is None else a + b


def total_usage(usages: Iterable[Usage]) -> Usage:
    """The sum of `usages` (an empty sum costs nothing)."""
    total = Usage()
    for usage in usages:
        total = total + usage
    return total


def _plus(a: int | None, b: int | None) -> int | None:
    """A count summed where either side measured it (an unmeasured side adds nothing)."""
    return None if a is None and b is None else (a or 0) + (b or 0)
