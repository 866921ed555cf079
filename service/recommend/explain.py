"""Why an item was recommended, in words: a template (default) or the LLM (checked).

The template is the fast path and always correct by construction: it names the
facet and one or two of its evidence items, or, for an event-based reason, the
user's own event and what the model saw ("Because you rated Toy Story 5/5, and
people who loved it loved this."). The LLM may phrase it better, but it
is given only the facet, that evidence and the item, and its answer is accepted
only if it cites nothing but the given evidence ids and names no title of the
user's other items. Anything else, a dead server included, falls back to the
template; an explanation never fails a request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from service.ingest.evidence import EvidenceEvent
from service.llm.failures import NoAnswer, describe, model_call
from service.llm.prompts import PromptFile, RenderedPrompt
from service.llm.runtime import LLMRuntime
from service.llm.structured import response_schema
from service.llm.untrusted import untrusted
from service.llm.usage import NO_USAGE, token_usage
from service.recommend.schemas import PopularTier, ReasonKind, RecommendationExplanation

EXPLANATION_MAX = 400  # characters; the schema asks for less
MIN_WORDS = 4
TITLE_CHARS = 120
TEXT_CHARS = 200
QUOTE_CHARS = 60  # of a search or a post, inside a template sentence

VERBS = {
    "like": "liked", "rating": "rated", "purchase": "bought", "view": "viewed",
    "click": "clicked on", "skip": "skipped", "dislike": "disliked",
    "search": "searched for", "post": "wrote about", "declared": "said",
}


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _phrase(e: EvidenceEvent) -> tuple[str, str] | None:
    verb = VERBS.get(e.type, e.type)
    if e.title:
        return verb, e.title
    if e.text:
        return verb, f"“{_clip(e.text, QUOTE_CHARS)}”"
    return None


def template_explanation(label: str, evidence: Sequence[EvidenceEvent]) -> str:
    """"Because you liked Alien and Dune (Science fiction films)." from the first two."""
    phrases = [p for p in map(_phrase, evidence) if p is not None][:2]
    if not phrases:
        return f"Because of your interest in {label}."
    if len(phrases) == 1:
        body = " ".join(phrases[0])
    elif phrases[0][0] == phrases[1][0]:
        body = f"{phrases[0][0]} {phrases[0][1]} and {phrases[1][1]}"
    else:
        body = f"{' '.join(phrases[0])} and {' '.join(phrases[1])}"
    return f"Because you {body} ({label})."


# How the LLM prompt and the chat name an event-based reason: (label, description).
REASON_TEXT: dict[ReasonKind, tuple[str, str]] = {
    "co_occurrence": ("Liked together",
                      "people who liked the cited item also liked this one"),
    "transition": ("What people do next",
                   "people who used the cited item often went on to this one next"),
    "sequence": ("Your recent activity",
                 "it tends to come next after the person's most recent activity"),
    "content": ("Similar items", "it is much like the cited item"),
}


def _event_phrase(e: EvidenceEvent, value: float | None, rating_max: float
                  ) -> tuple[str, str] | None:
    found = _phrase(e)
    if found is None:
        return None
    verb, what = found
    if e.type == "rating" and value is not None:
        return verb, f"{what} {value:g}/{rating_max:g}"
    return verb, what


def event_explanation(kind: ReasonKind, evidence: Sequence[EvidenceEvent],
                      values: dict[str, float | None], rating_max: float) -> str:
    """The template for a reason resting on the user's events through a model."""
    phrases = [p for p in (_event_phrase(e, values.get(e.event_id), rating_max)
                           for e in evidence) if p is not None]
    if not phrases:
        return "Because of your recent activity."
    first = " ".join(phrases[0])
    loved = evidence[0].type == "rating" and (values.get(evidence[0].event_id) or 0) >= (
        0.9 * rating_max)
    if kind == "co_occurrence":
        if loved:
            return f"Because you {first}, and people who loved it loved this."
        return f"Because you {first}, and people who liked it also liked this."
    if kind == "transition":
        return f"Because you {first}, and people who did went on to this next."
    if kind == "content":
        plain = _phrase(evidence[0]) or phrases[0]
        return f"Because it is much like {plain[1]}, which you {plain[0]}."
    if len(phrases) > 1:
        return (f"Because it often comes next after what you did recently: you {first} "
                f"and {' '.join(phrases[1])}.")
    return f"Because it often comes next after what you did recently: you {first}."


def popular_explanation(tier: PopularTier, events: int, days: int) -> str:
    """Says which tier an unpersonal pick came from, and never more than it shows."""
    noun = "interaction" if events == 1 else "interactions"
    if tier == "recent":
        return f"Popular in the last {days} days: {events} {noun} from other users."
    if tier == "all_time":
        return f"Popular overall: {events} {noun} from other users."
    return "From the catalog; not personal, and not popular yet."


# -- titles a text may or may not mention ---------------------------------------------

_YEAR = re.compile(r"\s*\(\d{4}(?:[-–]\d{0,4})?\)\s*$")
_INVERTED_ARTICLE = re.compile(r"^(?P<rest>.+), (?P<article>The|A|An)$")


def title_variants(title: str) -> set[str]:
    """How a text may name a title: as stored, without a trailing year, and with a
    catalog-style inverted article put back ("Matrix, The (1999)" -> "The Matrix")."""
    full = " ".join(title.split())
    bare = _YEAR.sub("", full)
    variants = {full, bare}
    inverted = _INVERTED_ARTICLE.match(bare)
    if inverted:
        variants.add(f"{inverted['article']} {inverted['rest']}")
    # Two-letter titles ("Up", "It") are ordinary words; a mention cannot be told apart.
    return {v for v in variants if len(v) >= 3}


def _mention(variant: str, *, any_case: bool) -> re.Pattern[str]:
    # A one-word title is matched in its own capitalisation ("Heat", not "heat");
    # longer titles in any case, since models lower-case them freely.
    flags = re.IGNORECASE if any_case or " " in variant else 0
    return re.compile(r"(?<!\w)" + re.escape(variant) + r"(?!\w)", flags)


def unexplained_titles(text: str, given: Iterable[str], others: Iterable[str]) -> list[str]:
    """Titles among `others` that `text` names once the given titles are taken out."""
    scrubbed = text
    for variant in sorted({v for t in given for v in title_variants(t)}, key=len, reverse=True):
        scrubbed = _mention(variant, any_case=True).sub(" ", scrubbed)
    return [t for t in others
            if any(_mention(v, any_case=False).search(scrubbed) for v in title_variants(t))]


# -- the LLM path -----------------------------------------------------------------------


def explanation_json_schema(evidence_ids: list[str]) -> dict[str, Any]:
    """The `response_format` schema: `RecommendationExplanation`'s, with evidence narrowed
    to the given ids (and to no more of them than were given)."""
    schema = response_schema(RecommendationExplanation, field_titles=False)
    evidence = schema["properties"]["evidence"]
    if evidence_ids:
        evidence["items"]["enum"] = evidence_ids
    evidence["maxItems"] = max(len(evidence_ids), 1)
    return schema


def prompt_messages(
    prompt: PromptFile, label: str, description: str, evidence: Sequence[EvidenceEvent],
    item_title: str, item_category: str | None, item_tags: Sequence[str],
) -> RenderedPrompt:
    """Only the facet, its evidence and the item, every user-written part quoted."""
    interest = untrusted(label, TITLE_CHARS)
    if description:
        interest += ": " + untrusted(description, TEXT_CHARS)
    lines = []
    for e in evidence:
        what = e.title or e.text or e.item_id or ""
        lines.append(f"{e.event_id} | {VERBS.get(e.type, e.type)} | "
                     f"{untrusted(what, TEXT_CHARS if e.title is None else TITLE_CHARS)}")
    item = untrusted(item_title, TITLE_CHARS)
    extras = [x for x in [item_category, ", ".join(item_tags[:5])] if x]
    if extras:
        item += " [" + untrusted("; ".join(extras), TITLE_CHARS)[1:-1] + "]"
    return prompt.render(interest=interest, activity="\n".join(lines), item=item)


@dataclass
class LLMExplanation:
    text: str | None  # None: not usable, see `problem`
    cited: list[str]
    problem: str | None
    latency_ms: int
    prompt_tokens: int = 0
    output_tokens: int = 0
    unavailable: bool = False  # the call itself failed (not the answer)


def _repeats_itself(words: list[str], span: int = 5) -> bool:
    """A run of `span` words said twice: small models loop until the length limit."""
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - span + 1):
        gram = tuple(w.lower() for w in words[i:i + span])
        if gram in seen:
            return True
        seen.add(gram)
    return False


def check_explanation(
    parsed: Any, given_ids: Sequence[str], given_titles: Iterable[str],
    other_titles: Iterable[str],
) -> tuple[str, list[str]] | str:
    """(text, cited ids) when grounded and a whole sentence, else the reason it is not."""
    if not isinstance(parsed, dict):
        return "the answer is not a JSON object"
    text, cited = parsed.get("explanation"), parsed.get("evidence")
    if not isinstance(text, str) or not text.strip():
        return "no explanation text"
    text = " ".join(text.split())
    if not isinstance(cited, list) or not cited or not all(isinstance(c, str) for c in cited):
        return "no evidence ids cited"
    invented = [c for c in cited if c not in given_ids]
    if invented:
        return f"cites evidence it was not given: {invented[:3]}"
    named = unexplained_titles(text, given_titles, other_titles)
    if named:
        return f"mentions items it was not given: {named[:3]}"
    words = text.split()
    if len(text) > EXPLANATION_MAX:
        return "the explanation is too long"
    if len(words) < MIN_WORDS or text[-1] not in ".!?":
        return "the explanation is not a whole sentence"
    if _repeats_itself(words):
        return "the explanation repeats itself"
    return text, list(dict.fromkeys(cited))


def ask_for_explanation(
    llm: LLMRuntime, messages: RenderedPrompt, evidence_ids: list[str],
    given_titles: Iterable[str], other_titles: Iterable[str],
) -> LLMExplanation:
    """One structured call; no repair round (the template is a fine answer)."""
    started = time.perf_counter()
    try:
        with model_call():
            structured = llm.chat_model().with_structured_output(
                explanation_json_schema(evidence_ids), method="json_schema", include_raw=True)
            with llm.call_slot():
                out = structured.invoke(list(messages), config=messages.run_config())
    except NoAnswer as exc:  # server down, timed out, cut off: the template it is
        return LLMExplanation(None, [], describe(exc.cause, 300), _ms(started),
                              unavailable=True)
    raw = out.get("raw") if isinstance(out, dict) else None
    tokens = token_usage(raw) or NO_USAGE
    if not isinstance(out, dict) or out.get("parsing_error") is not None:
        return LLMExplanation(None, [], "the answer was not valid JSON", _ms(started), *tokens)
    checked = check_explanation(out.get("parsed"), evidence_ids, given_titles, other_titles)
    if isinstance(checked, str):
        return LLMExplanation(None, [], checked, _ms(started), *tokens)
    return LLMExplanation(checked[0], checked[1], None, _ms(started), *tokens)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
