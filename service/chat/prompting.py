"""The trace as the model sees it: plain lines, every user- or catalog-written part
quoted, shortened until it fits the token budget; then the chat's messages."""

from __future__ import annotations

from datetime import datetime

from service.chat.context import TraceContext, as_evidence, facet_evidence
from service.chat.schemas import DECLINE
from service.ingest.evidence import EvidenceEvent as Evidence
from service.llm.prompts import Message, PromptFile, RenderedPrompt
from service.llm.tokens import count_tokens
from service.llm.untrusted import untrusted
from service.recommend.explain import REASON_TEXT, VERBS
from service.recommend.schemas import Because, RecommendedItem

TRACE_BUDGET_TOKENS = 2400  # the embedded model has 5k tokens of context in all
HISTORY_BUDGET_TOKENS = 900
TITLE_CHARS = 120
TEXT_CHARS = 200
# (items listed, evidence lines per facet), tried in order until the block fits the budget.
TRACE_SHAPES = ((20, 6), (10, 4), (5, 3), (3, 2), (1, 1))


def _day(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC")


def _evidence_line(e: Evidence) -> str:
    what = (untrusted(e.title, TITLE_CHARS) if e.title
            else untrusted(e.text, TEXT_CHARS) if e.text
            else untrusted(e.item_id or "", TITLE_CHARS))
    return f"[{e.event_id}] {_day(e.ts)} {VERBS.get(e.type, e.type)} {what}"




def _score(item: RecommendedItem) -> str:
    # A popular item's score is a count of uses; a personal one is a fraction.
    return f"{item.score:g}" if item.because is None else f"{item.score:.3f}"


def _reason(because: Because) -> str:
    """The reason in words: the interest, or what the model saw in the person's events."""
    if because.kind == "facet":
        return (f"for the interest {untrusted(because.label or '', 80)} "
                f"(similarity {because.similarity or 0:.2f})")
    return f"because {REASON_TEXT[because.kind][1]}"


def _item_line(rank: int, item: RecommendedItem) -> str:
    line = f"{rank}. {untrusted(item.title, TITLE_CHARS)} (item {item.item_id}), score "
    if item.because is None:
        return line + (f"{_score(item)} (no personal reason: "
                       f"{untrusted(item.explanation, 160)})")
    ids = " ".join(f"[{e.event_id}]" for e in item.because.evidence)
    return line + f"{_score(item)}, {_reason(item.because)}; evidence {ids or 'none'}"


def render_trace(ctx: TraceContext, items_shown: int, evidence_shown: int) -> str:
    """The data block: plain lines, every user- or catalog-written part quoted."""
    p = ctx.parameters
    trace = ctx.trace
    out = [f"Recommendation {trace.recommendation_id}, made {_day(trace.created_at)}, "
           f"{len(ctx.items)} items."]
    if trace.source == "popular":
        out.append("Source: the person had no active interests, so these are items other "
                   f"people used most in the last {p.popular_window_days} days, then of all "
                   "time, then other catalog items; each item's reason says which.")
    elif trace.source == "hybrid":
        ranker = p.models.ranker if p.models else None
        out.append("Source: the person's interests and what the service learned from "
                   "everyone's activity (items liked together, what people do next, "
                   "recent-activity patterns, similar items, popularity), ranked together by "
                   + ("a learned ranker" if ranker else "a fixed blend of those signals")
                   + ". Each item's reason is its strongest one that the person's own "
                   "events support.")
    else:
        out.append("Source: the person's interests. An item's score is the interest's "
                   "strength times its similarity to the item, less penalties for "
                   "interests the person avoids.")
    out.append(f"Decay: an interest's strength halves every {p.half_life_short_days:g} days "
               f"if short-term and every {p.half_life_long_days:g} days if long-term, counted "
               "from when it was last reinforced; pinned interests do not decay.")
    if ctx.facets:
        out += ["", "Interests used:"]
    for f in ctx.facets:
        head = (f"- {untrusted(f.label, 80)}: {f.polarity}, {f.horizon}-term"
                f"{', pinned' if f.pinned else ''}, strength {f.strength:.3f} at the time "
                f"(set to {f.stored_strength:.3f} on {_day(f.strength_at)}); "
                f"{untrusted(f.description, TEXT_CHARS)}")
        shown = facet_evidence(ctx, f, evidence_shown)
        more = len(f.evidence) - len(shown)
        out.append(head)
        out += [f"  {_evidence_line(e)}" for e in shown]
        if more > 0:
            out.append(f"  ({more} more evidence events not shown)")
    out += ["", "Items recommended (rank, title, score, reason):"]
    listed = ctx.items[:items_shown]
    out += [_item_line(n, i) for n, i in enumerate(listed, start=1)]
    if len(ctx.items) > len(listed):
        out.append(f"({len(ctx.items) - len(listed)} more items not shown)")
    if ctx.asked is not None:
        out += ["", _asked_block(ctx, ctx.asked)]
    return "\n".join(out)


def _asked_block(ctx: TraceContext, item: RecommendedItem) -> str:
    rank = ctx.items.index(item) + 1
    lines = [f"The question is about item {item.item_id}: {untrusted(item.title, TITLE_CHARS)}, "
             f"rank {rank}, score {_score(item)}."]
    if item.because is None:
        lines.append("It was not chosen from the person's activity (a popular or catalog "
                     "item); the trace holds no personal reason for it.")
    else:
        b = item.because
        if b.kind == "facet":
            lines.append(f"Because: the interest {untrusted(b.label or '', 80)}, strength "
                         f"{b.strength or 0:.3f} at the time, similarity "
                         f"{b.similarity or 0:.2f}. Evidence:")
        else:
            lines.append(f"Because: {REASON_TEXT[b.kind][1]}. The person's events it rests "
                         "on:")
        lines += [f"  {_evidence_line(as_evidence(e))}" for e in b.evidence]
    lines.append(f"Explanation shown: {untrusted(item.explanation, 400)}")
    return "\n".join(lines)


def fitted_trace(ctx: TraceContext) -> str:
    """The richest rendering that fits the token budget (long lists lose their tail)."""
    block = ""
    for items_shown, evidence_shown in TRACE_SHAPES:
        block = render_trace(ctx, items_shown, evidence_shown)
        if count_tokens(block) <= TRACE_BUDGET_TOKENS:
            break
    return block


def _plain(text: str) -> str:
    """The person's own words, kept from opening or closing the data block."""
    return text.replace("<", "‹").replace(">", "›")


def build_messages(prompt: PromptFile, ctx: TraceContext, question: str) -> RenderedPrompt:
    """System rules, then as much recent history as the budget holds, then data + question."""
    rendered = prompt.render(trace=fitted_trace(ctx), question=_plain(question),
                             decline=DECLINE)
    past: list[Message] = []
    used = 0
    for role, text in reversed(ctx.history):
        cost = count_tokens(text)
        if used + cost > HISTORY_BUDGET_TOKENS:
            break
        past.insert(0, ("human" if role == "user" else "ai", _plain(text)))
        used += cost
    messages = rendered.messages
    head = messages[:1] if messages[0][0] == "system" else ()
    return rendered.with_messages([*head, *past, *messages[len(head):]])
