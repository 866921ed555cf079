"""Does a piece of untrusted text read as instructions to a model?

Users and catalogs send us titles, posts, searches and tags; some of it is written
to steer a model ("ignore all previous instructions ..."). Flagged text still counts
as activity (its event is stored and can be evidence), but it is never shown to the
model and never becomes or shapes a label, a description or a narrative.

The check is a set of patterns, not a model: it must be cheap (it runs on every
text of every refresh), deterministic and explainable. A text is flagged when it
  - addresses a model or its rules: "ignore/disregard/forget ... instructions",
    "system prompt", "developer mode", "you are now", role markers ("SYSTEM:",
    "### Assistant:"), chat-template tokens;
  - tries to change our output: closes or opens our delimiters (`</group>`), speaks
    of the JSON fields we ask for (label, facet, evidence, narrative, schema),
    or carries JSON that looks like an answer;
  - does the same in German, French, Spanish or Chinese (the corpus in
    `evals/injection/corpus.jsonl` holds examples, and benign look-alikes such as
    "how to ignore the noise when hiking" that must not be flagged).
A bare imperative verb is not enough ("ignore the noise" is benign): the patterns
pair such verbs with what they would act on (instructions, rules, prompt, above).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_VERB_EN = r"(?:ignore|disregard|forget|override|bypass|skip|drop|abandon)"
_OBJECT_EN = (r"(?:instructions?|rules?|prompts?|directions?|guidelines?|constraints?|"
              r"system message|context|everything (?:above|before)|the above|what (?:you were|"
              r"i) (?:told|said))")

# Each pattern alone is enough; all run on casefolded, NFKC-normalised text.
_PATTERNS: tuple[str, ...] = (
    # English: instructions aimed at the model.
    rf"\b{_VERB_EN}\b(?:\W+\w+){{0,4}}?\W+(?:all\W+|any\W+|the\W+|your\W+|previous\W+|prior\W+|"
    rf"earlier\W+|above\W+|preceding\W+)*{_OBJECT_EN}",
    r"\b(?:previous|prior|above|earlier|preceding)\s+(?:instructions?|prompts?|rules?)\b",
    r"\bnew\s+(?:instructions?|rules?|task)\s*:",
    r"\bsystem\s*prompt\b|\bsystem\s+message\b|\bdeveloper\s+mode\b|\bjailbreak",
    r"\byou\s+are\s+now\b|\bact\s+as\s+(?:an?\s+)?(?:ai|assistant|model|system)\b",
    r"\bfrom\s+now\s+on\b.*\b(?:you|reply|answer|respond|output)\b",
    r"\b(?:repeat|reveal|print|show|output|leak)\b(?:\W+\w+){0,4}?\W+(?:text|words|rules|"
    r"instructions|prompt)\s+(?:above|before|you were given)",
    r"\b(?:repeat|reveal|print|leak)\b(?:\W+\w+){0,3}?\W+(?:your|the)\s+(?:system\s+)?"
    r"(?:prompt|instructions|rules)\b",
    r"(?:^|\n|\s)(?:#+\s*)?(?:system|assistant|user|developer)\s*:",
    r"<\|?/?(?:im_start|im_end|system|assistant|user|endoftext|eot_id)\|?>",
    r"\[/?inst\]|<<\s*sys\s*>>",
    r"</?\s*(?:activity|group|facets|system|instructions?)\s*>",
    r"\b(?:reply|respond|answer|output|write)\b(?:\W+\w+){0,3}?\W+(?:in\s+)?(?:yaml|xml|"
    r"json|only the word|with the word)\b",
    r"\b(?:add|create|invent|output|include)\b(?:\W+\w+){0,3}?\W+(?:a\s+)?(?:facet|label|"
    r"field|evidence|narrative)\b",
    r"\b(?:cite|use)\s+(?:them|these|it|those)\s+as\s+evidence\b",
    r"\bevidence\b.{0,40}\b(?:e\d+|ev_\w+)\b|\b(?:e\d+|ev_\w+)\b.{0,40}\bevidence\b",
    r"[\"']\s*(?:label|facets|narrative|evidence|description)\s*[\"']\s*:",
    r"\bthe\s+user\s+(?:loves|likes|wants|is interested in)\b.*\b(?:instructions?|label|"
    r"facet)\b",
    r"\bpwned\b|\bprompt\s+injection\b",
    # German.
    r"\b(?:ignoriere|ignorier|vergiss|vergessen sie|missachte|ignorieren sie)\b.{0,60}"
    r"\b(?:anweisungen|anweisung|regeln|vorgaben|befehle|alles)\b",
    r"\b(?:vorherigen|bisherigen|obigen)\s+(?:anweisungen|regeln|befehle)\b",
    r"\bdu\s+bist\s+(?:jetzt|nun|ab\s+sofort)\b|\bsystemanweisung|\bsystem-?prompt",
    r"\b(?:antworte|gib)\b.{0,40}\b(?:nur|ausschließlich)\b.{0,40}\b(?:wort|json|label)\b",
    # French.
    r"\b(?:ignore[zr]?|oublie[zr]?|néglige[zr]?)\b.{0,60}\b(?:instructions?|consignes?|"
    r"règles?|directives?)\b",
    r"\b(?:instructions?|consignes?)\s+(?:précédentes?|ci-dessus|antérieures?)\b",
    r"\btu\s+es\s+(?:maintenant|désormais)\b|\bvous\s+êtes\s+(?:maintenant|désormais)\b",
    r"\b(?:réponds|répondez)\b.{0,40}\b(?:uniquement|seulement)\b",
    # Spanish.
    r"\b(?:ignora|ignore|olvida|olvide|omite|descarta)\b.{0,60}\b(?:instrucciones|"
    r"indicaciones|reglas|órdenes)\b",
    r"\b(?:instrucciones|reglas)\s+(?:anteriores|previas)\b",
    r"\b(?:ahora\s+eres|ahora\s+actúas\s+como)\b",
    r"\b(?:responde|contesta)\b.{0,40}\b(?:solo|solamente|únicamente)\b",
    # Chinese (no word boundaries).
    r"(?:忽略|无视|忘记|忘掉|不要理会|忽視|無視).{0,12}(?:指令|指示|说明|規則|规则|提示|要求|之前|以上|上面)",
    r"(?:之前|以上|上面|先前)的?(?:所有)?(?:指令|指示|规则|提示)",
    r"系统提示|系統提示|你现在是|你現在是|开发者模式|只输出|只回答|只回复",
)


@lru_cache(maxsize=1)
def _compiled() -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE | re.DOTALL)


def normalise(text: str) -> str:
    """NFKC, casefolded, controls and zero-width characters removed, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf")
                   or ch in "\n\t")
    return re.sub(r"[ \t]+", " ", text).casefold()


def reads_as_instructions(text: str | None) -> bool:
    """True when the text addresses a model or tries to shape its output."""
    if not text:
        return False
    return _compiled().search(normalise(text)) is not None
