"""The profile's short narrative: what the narrating prompt is shown, how the model's
sentence is checked, and the sentence built from the labels when it fails.

The model writes from the facets' labels only (`prompts/narrate_profile`); a sentence
that fails the checks is replaced by one built from the labels.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.summaries.injection import reads_as_instructions
from service.summaries.labels import REFERENCE, names_a_title, stem, topic_words
from service.summaries.schemas import NARRATIVE_MAX, InterestFacet

NARRATE_PROMPT = "narrate_profile"
NARRATIVE_MAX_OUTPUT = 60

# Words a narrative may use beyond the facets' own.
NARRATIVE_WORDS = frozenset("""
enjoys enjoy loves love likes like prefers prefer avoids avoid stays stay away from keeps
away steers clear dislikes dislike fan fond keen taste tastes especially also mostly
mainly often lately recently watches watch reads read listens listen buys buy person
they them their who has have is are be being into interested interest interests
""".split())


def narration_variables(facets: Sequence[InterestFacet]) -> dict[str, str]:
    """Labels only: descriptions gave the small model sentences to copy."""
    def listed(polarity: str) -> str:
        return "; ".join(f.label for f in facets if f.polarity == polarity) or "nothing"

    return {"likes": listed("like"), "avoids": listed("avoid")}


def fallback_narrative(facets: Sequence[InterestFacet]) -> str:
    """"Interested in: A; B. Avoids: C." (labels may hold commas themselves)."""
    likes = [f.label for f in facets if f.polarity == "like"]
    avoids = [f.label for f in facets if f.polarity == "avoid"]
    parts = []
    if likes:
        parts.append(f"Interested in: {'; '.join(likes)}.")
    if avoids:
        parts.append(f"Avoids: {'; '.join(avoids)}.")
    return " ".join(parts)[:NARRATIVE_MAX]


def narrative_problem(text: str, facets: Sequence[InterestFacet],
                      titles: Sequence[str]) -> str | None:
    if reads_as_instructions(text):
        return "instruction-like"
    if "(" in text or any(len(f.description) >= 20 and f.description.rstrip(".") in text
                          for f in facets):
        return "copies the list it was given"
    if REFERENCE.search(text):
        return "cites an event reference"
    if names_a_title(text, titles):
        return "names a title"
    labels = {stem(w) for f in facets for w in topic_words(f.label)}
    said = [stem(w) for w in topic_words(text) if w not in NARRATIVE_WORDS]
    if not set(said) & labels:
        return "mentions none of the facets' labels"
    known = labels | {stem(w) for f in facets for w in topic_words(f.description)}
    known |= {stem(t) for f in facets if f.group for t in [*f.group.top_tags]}
    if sum(w in known for w in said) < 0.6 * len(said):
        return "mentions what the facets do not"
    return None
