"""Checking the model's answer: citations the trace does not hold are removed and
flagged, and an answer that neither cites the trace nor declines is replaced by the
deterministic one (`source: "fallback"`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from service.chat.context import TraceContext
from service.chat.fallback import fallback_answer
from service.chat.schemas import AnswerSource
from service.core.schemas import EXTERNAL_ID_PATTERN

ANSWER_MAX_CHARS = 4000

_DECLINED = re.compile(r"\bthe trace does(?: not|n[’']t) say\b", re.IGNORECASE)
_BRACKETS = re.compile(r"\[([^\[\]\n]{1,300})\]")
_EVENT_ID = re.compile(EXTERNAL_ID_PATTERN)


@dataclass
class CheckedAnswer:
    answer: str
    cited: list[str]
    dropped: list[str]
    grounded: bool
    source: AnswerSource


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return "\n".join(line.strip() for line in text.strip().splitlines())


def check_citations(text: str, evidence_ids: Iterable[str]) -> tuple[str, list[str], list[str]]:
    """(text without unknown citations, cited trace ids, dropped ids).

    A bracket counts as a citation when everything in it, split at commas, looks like
    an event id; "[Director's cut]" in a quoted title is left alone. Case slips are
    forgiven when they leave one candidate ("[E12]" for "e12").
    """
    valid = set(evidence_ids)
    folded: dict[str, str | None] = {}
    for e in valid:
        folded[e.casefold()] = None if e.casefold() in folded else e
    cited: list[str] = []
    dropped: list[str] = []

    def resolve(match: re.Match[str]) -> str:
        ids = [part.strip() for part in re.split(r"[,;]", match[1])]
        if not all(_EVENT_ID.fullmatch(i) for i in ids):
            return match[0]
        keep = []
        for i in ids:
            real = i if i in valid else folded.get(i.casefold())
            if real is None:
                dropped.append(i)
            else:
                keep.append(real)
        cited.extend(keep)
        return "[" + ", ".join(keep) + "]" if keep else ""

    cleaned = _BRACKETS.sub(resolve, text)
    return _tidy(cleaned), list(dict.fromkeys(cited)), list(dict.fromkeys(dropped))


def check_answer(text: str, ctx: TraceContext, question: str) -> CheckedAnswer:
    """Keep trace citations, drop others; no citation and no decline means fallback."""
    text = text.replace("\x00", "")[:ANSWER_MAX_CHARS]
    cleaned, cited, dropped = check_citations(text, ctx.evidence_ids)
    if cited or (cleaned and _DECLINED.search(cleaned)):
        return CheckedAnswer(cleaned, cited, dropped, grounded=not dropped, source="model")
    answer, fallback_cited = fallback_answer(ctx, question)
    return CheckedAnswer(answer, fallback_cited, dropped, grounded=True, source="fallback")

