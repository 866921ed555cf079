"""Checks on what the model wrote for a group, and the deterministic words used instead.

The embedded 135M model copies titles when it sees them and sometimes writes junk
("Fantasy, Fantasy, Fantasy"). It never sees titles now, but its answer is still
checked: a label is rejected when it
  - is a title or part of one (compared with the group's item titles, normalised),
  - contains a year or an event reference (E12, ev_..., #3),
  - is not supported by the group: none of its content words relates to the group's
    tags, genres or categories, and its embedding is not close to the group's
    (the centroid of its items' vectors, or its tags as text),
  - reads as instructions to a model, or repeats a word.
A rejected label falls back to one built from the group's top tags ("Animation,
Children, Comedy"); a rejected description to a sentence built from its statistics.
Polarity and evidence never come from the model.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np

from service.core.schemas import DESCRIPTION_MAX
from service.summaries.grouping import YEAR, EventGroup
from service.summaries.injection import reads_as_instructions
from service.summaries.schemas import NAME_DESCRIPTION_MAX, NAME_LABEL_MAX, clean_text
from service.vectors.embeddings import Embedder

# Cosine (MiniLM) between a label and its group's centroid or tag text above which an
# unrelated-looking label still counts as supported. Calibrated on test catalogs:
# the right group's tags 0.73-0.92 ("Hiking and outdoor gear" vs "hiking, trails,
# outdoor gear"), other groups' 0.04-0.46 ("Horror thrillers" vs "sci-fi"); the
# centroid of a group's item vectors sits lower (0.46-0.70 for the right labels).
SUPPORT_SIMILARITY = 0.55
REFERENCE = re.compile(r"\b(?:e\d+|ev_\w+|evt?[-_]\w+|event\s*#?\d+)\b|#\d+", re.IGNORECASE)
TOKEN = re.compile(r"[^\W_]+")
FILLER = frozenset("""
and the for with about from into its of in on to a an or lover lovers fan fans
interest interests interested enjoys enjoy enjoying topic topics stuff things related
likes like liked avoid avoids avoiding dislikes dislike disliked person user people
""".split())
# Words a copied title comes wrapped in ("Megamind movies").
KIND_WORDS = frozenset("""
film films movie movies series show shows book books album albums song songs music
video videos game games story stories
""".split())
SENTENCE_END = (".", "!", "?", "\u2026")  # how a finished sentence ends


def normalise(text: str) -> str:
    """Lowercased words without accents or punctuation, single-spaced."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(TOKEN.findall(text.casefold()))


def stem(word: str) -> str:
    """Crude English stem, enough to match "films" with "film" and "hiking" with "hike"."""
    for suffix in ("ings", "ing", "ies", "es", "s", "ed", "al", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    return [w for w in normalise(text).split() if w not in FILLER and len(w) > 1]


def _tag_stems(tags: Sequence[str]) -> set[str]:
    return {stem(w) for t in tags for w in normalise(t.replace("-", " ")).split()
            if w not in FILLER} | {stem(normalise(t).replace(" ", "")) for t in tags}


def is_title_copy(label: str, titles: Sequence[str]) -> bool:
    """The label is a title (give or take "movies"), holds a title of two or more words,
    or is a run of a title's words covering at least half of it."""
    norm = normalise(label)
    core = [w for w in norm.split() if w not in KIND_WORDS and w not in FILLER]
    if not norm:
        return False
    for title in titles:
        t = normalise(YEAR.sub(" ", title))
        if not t:
            continue
        if norm == t or core == [w for w in t.split() if w not in FILLER]:
            return True
        if len(t.split()) >= 2 and f" {t} " in f" {norm} ":
            return True
        if len(norm.split()) >= 2 and f" {norm} " in f" {t} " and len(norm) >= 0.5 * len(t):
            return True
    return False


def marked_problem(text: str) -> str | None:
    """What disqualifies any model-written words: instructions, a year, an event reference."""
    if reads_as_instructions(text):
        return "instruction-like"
    if YEAR.search(text):
        return "contains a year"
    if REFERENCE.search(text):
        return "cites an event reference"
    return None


def label_problem(label: str, group: EventGroup, embedder: Embedder | None,
                  titles: Sequence[str] = ()) -> str | None:
    """Why the model's label cannot stand, or None when it can. `titles` are the user's
    other items' titles: a label copying any title the user has is no topic."""
    if not label or sum(ch.isalnum() for ch in label) < 3:
        return "empty"
    if marked := marked_problem(label):
        return marked
    if is_title_copy(label, [*group.titles, *titles]):
        return "copies a title"
    words = content_words(label)
    if not words:
        return "no content words"
    if len(words) != len({stem(w) for w in words}):
        return "repeats a word"
    if len(label.split()) > 6:
        return "more than 6 words"
    if not topic_words(label):
        return "names only a kind of item"
    if not supported(label, group, embedder):
        return "not supported by the group's tags"
    return None


def topic_words(text: str) -> list[str]:
    """Content words that could name a topic ("films", "music" cannot)."""
    return [w for w in content_words(text) if w not in KIND_WORDS]


def supported(text: str, group: EventGroup, embedder: Embedder | None,
              share: float = 0.5) -> bool:
    """At least `share` of its topic words (and one) are among the group's tags, else
    its embedding is close to the group's (tags as text, or its vectors' centroid).

    Labels need half their words (a label is all topic); descriptions one (a
    sentence carries verbs and fillers).
    """
    stems = [stem(w) for w in topic_words(text)]
    if not stems:
        return False
    known = _tag_stems(group.tags)
    hits = sum(s in known for s in stems)
    if hits and hits >= share * len(stems):
        return True
    if embedder is None:
        return False
    tag_text = ", ".join([*group.stats.top_tags, *group.stats.top_categories])
    texts = [text, tag_text] if tag_text else [text]
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    best = float(vectors[0] @ vectors[1]) if len(vectors) > 1 else 0.0
    if group.centroid.size == vectors.shape[1]:
        best = max(best, float(vectors[0] @ group.centroid))
    return best >= SUPPORT_SIMILARITY


def cut_off(description: str) -> bool:
    """The answer's grammar ends the string at `NAME_DESCRIPTION_MAX` characters, so a
    model that rambles stops mid-word ("... with a mix of fantasy and aj"): a description
    that long without a closing mark was cut, not finished."""
    text = description.rstrip()
    return len(text) >= NAME_DESCRIPTION_MAX - 2 and not text.endswith(SENTENCE_END)


def description_problem(description: str, group: EventGroup,
                        embedder: Embedder | None = None,
                        titles: Sequence[str] = ()) -> str | None:
    words = content_words(description)
    if len(words) < 2:
        return "empty"
    if cut_off(description):
        return "cut off at the length limit"
    if max(Counter(words).values()) >= 3:
        return "repeats itself"
    if marked := marked_problem(description):
        return marked
    if names_a_title(description, [*group.titles, *titles]):
        return "names a title"
    if not supported(description, group, embedder, share=0.0):
        return "not supported by the group's tags"
    return None


def names_a_title(text: str, titles: Sequence[str]) -> bool:
    """A title (without its year) appears in the text as a whole phrase."""
    said = f" {normalise(text)} "
    return any(len(t) >= 4 and f" {t} " in said
               for t in (normalise(YEAR.sub(" ", title)) for title in titles))


def fallback_label(group: EventGroup) -> str:
    """The group's top two or three tags (or categories), title-cased.

    Short tags shared by several events come first: catalogs carry one-off phrases
    ("a clever chef rat") that name one item, not a taste.
    """
    names = _label_tags(group)
    words: list[str] = []
    for name in names[:3]:
        if len(", ".join([*words, name])) > NAME_LABEL_MAX:
            break
        words.append(name[:1].upper() + name[1:])
    label = ", ".join(words) or "Mixed activity"
    return clean_text(label, NAME_LABEL_MAX)


def _nameable(tag: str) -> bool:
    """A tag that can stand in a label: three letters at least, not an event reference
    ("x", "#1", "e12" would make a label the facet schema refuses)."""
    return (sum(ch.isalpha() for ch in tag) >= 3
            and not re.fullmatch(r"e\d+", tag.strip(), re.IGNORECASE))


def _label_tags(group: EventGroup) -> list[str]:
    tags = {t: n for t, n in group.stats.top_tags.items() if _nameable(t)}
    short = [t for t in tags if len(t.split()) <= 2]
    shared = [t for t in short if tags[t] >= 2 or group.stats.count < 2]
    rest = [t for t in short if t not in shared]
    return ((shared + rest)[:3]
            or [c for c in group.stats.top_categories if _nameable(c)][:2]
            or list(tags)[:1])


def fallback_description(group: EventGroup) -> str:
    """One sentence from the statistics: what, how much, how it was rated."""
    s = group.stats
    verb = "Avoids" if group.polarity == "avoid" else "Interested in"
    topics = ", ".join(_label_tags(group)) or "these items"
    actions = ", ".join(f"{n} {t}" for t, n in list(s.event_types.items())[:2])
    rating = f", rated {s.mean_rating:g} on average" if s.mean_rating is not None else ""
    return clean_text(f"{verb} {topics} ({actions}{rating}).", DESCRIPTION_MAX)
