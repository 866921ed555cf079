"""interest-tracker: LLM-tracked user interests with explained recommendations."""

__version__ = "0.1.0"
