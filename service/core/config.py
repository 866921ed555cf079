"""Settings: one class, read once, `INTEREST_` environment prefix.

The embedded defaults need no environment at all: SQLite and Chroma live in the
data folder, the LLM is the embedded one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INTEREST_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("data")
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; SQLite in the data folder when unset."
    )
    chroma_url: str | None = None
    # Several deployments (or test runs) can share one Chroma server under distinct prefixes.
    chroma_collection_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_-]{0,40}$")

    llm_backend: Literal["embedded", "openai", "fake"] = "embedded"
    llm_base_url: str | None = Field(default=None, description="e.g. http://vllm:8000/v1")
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_seconds: float = 120.0
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_max_output_tokens: int = 1024
    llm_temperature: float = 0.0
    # Calls in flight to an OpenAI-compatible server; more wait their turn (the wait
    # does not count towards the timeout). The embedded server allows one per slot.
    llm_max_concurrency: int = Field(default=16, ge=1)
    # The embedded llama.cpp server. Measured on 2 cores with SmolLM2-135M: generation
    # runs 2-3x faster on one thread than on two (per-token synchronisation costs more
    # than the second core gives), prompt processing faster on two, and generation at
    # 2-3k tokens of context faster without flash attention (28 vs 18 tok/s).
    embedded_llm_threads: int = 1
    embedded_llm_batch_threads: int = 2
    embedded_llm_flash_attention: bool = False
    # One slot by default: on 2 cores, batched decoding switches llama.cpp to its
    # multi-threaded path and measured slower than one refresh after another
    # (0.87 vs 1.58 refreshes/min with two slots; four slots timed out). Concurrent
    # refreshes queue in LLMRuntime.call_slot. Raise it on bigger machines.
    embedded_llm_parallel: int = 1
    # Shared by the slots: each needs a prompt (~3k) plus an answer (~1k).
    embedded_llm_context_tokens: int = 5120

    prompts_dir: Path = Path(__file__).resolve().parents[2] / "prompts"
    # Unread events one refresh groups, the newest first (grouping 10,000 takes ~1 s; only
    # group statistics reach the model). Older unread events beyond it are skipped.
    summary_max_events: int = Field(default=1000, ge=1, le=10000)
    # Groups per refresh the model names (the largest first; the rest are named from
    # their tags). On 2 cores each call costs ~1.5 s with the embedded model (DESIGN.md
    # §8: p50 <= 8 s a refresh). 0: no model call at all, names from tags only.
    summary_model_groups: int = Field(default=3, ge=0, le=8)
    embedding_backend: Literal["local", "openai"] = "local"
    embedding_base_url: str | None = Field(default=None, description="OpenAI-compatible /v1")
    embedding_model: str | None = None
    embedding_dimensions: int = 384

    # How strongly a hybrid list's mix of tags is drawn to the profile's (Steck's
    # calibration, `recommend/ranking.py`); 0 turns it off.
    recommend_calibration: float = Field(default=0.5, ge=0.0, le=10.0)
    # The share of its relevance a hybrid candidate keeps when none of its reasons reads
    # as related to it (`recommend/ranking.py`); 1 turns the discount off.
    recommend_unexplained_keep: float = Field(default=0.7, gt=0.0, le=1.0)
    # MMR's weight on relevance against redundancy with the items already picked
    # (`recommend/ranking.py`); 1 leaves the order to relevance (and calibration).
    recommend_mmr_lambda: float = Field(default=0.7, ge=0.0, le=1.0)

    # Profile memory (DESIGN.md §4): read-time decay and the merge rules.
    half_life_short_days: float = Field(default=7.0, gt=0)
    half_life_long_days: float = Field(default=90.0, gt=0)
    facet_match_threshold: float = Field(default=0.8, ge=-1.0, le=1.0)
    reinforcement_rate: float = Field(default=0.5, gt=0, le=1.0)
    promote_after_reinforcements: int = Field(default=3, ge=1)
    promote_span_days: float = Field(default=14.0, ge=0)
    archive_below: float = Field(default=0.05, ge=0, lt=1.0)
    max_facet_evidence: int = Field(default=20, ge=1, le=200)
    # The share of a refresh's strongest new facet that the short-term facets of its
    # polarity it passed over lose (`profiles/merge.py`); 0: they only decay with time.
    displacement_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    # Refresh triggers, run by the in-process worker: N new events, or a profile this old.
    refresh_after_events: int = Field(default=20, ge=1)
    refresh_max_age_hours: float = Field(default=24.0, gt=0)
    # Whether the API process runs the worker in a thread. Off when `interest-tracker
    # worker` processes do the work (PostgreSQL, several API replicas).
    refresh_worker: bool = True
    refresh_poll_seconds: float = Field(default=30.0, gt=0)
    # Refresh and training jobs (service/jobs/): a worker's lease on a job runs out after
    # this long unless renewed (a worker killed mid-job frees its job then); a failed job
    # is retried after base, 2 x base, ... (at most the max) until its attempts are used,
    # then ends failed with its error, and its trigger rests for the max wait.
    job_lease_seconds: float = Field(default=600.0, gt=0)
    job_max_attempts: int = Field(default=5, ge=1, le=100)
    job_retry_base_seconds: float = Field(default=60.0, ge=0)
    job_retry_max_seconds: float = Field(default=3600.0, ge=0)
    # Ended jobs are kept this long (what ran, what failed and why), then deleted by the
    # worker; never before the max retry wait, while a failed trigger still rests.
    job_keep_hours: float = Field(default=168.0, ge=0)
    # An explicit refresh (POST .../profile/refresh) that finds a worker refreshing the
    # same user waits this long for it and answers with its result, else 409.
    refresh_wait_seconds: float = Field(default=120.0, ge=0)
    # Recommender training (service/training/), also run by that worker: a tenant's
    # models are retrained after this many new item events, or when older than this
    # and anything new arrived. The sequence model trains for at most this long.
    train_after_events: int = Field(default=1000, ge=1)
    train_max_age_hours: float = Field(default=24.0, gt=0)
    train_sequence_seconds: float = Field(default=45.0, gt=0)
    # Given, the sequence model trains for this many epochs whatever the time instead:
    # the same models (and lists) whatever else the machine is doing.
    train_sequence_epochs: int | None = Field(default=None, ge=1, le=1000)
    # Processes that build the ranker's training samples side by side (1: the training
    # thread alone); above 1, with `train_sequence_epochs` set, the final models are also
    # fit in a process of their own while the held-out ones are fit. Each holds a copy
    # of the models and item vectors.
    train_workers: int = Field(default=2, ge=1, le=64)
    # Whether the learned ranker learns from the facet features (item vectors and
    # pseudo-facets at training, the profile's facets at serving).
    ranker_facet_features: bool = True
    # With facet features on, whether training keeps them only where they beat the same
    # ranker without them on the tenant's validation users by one standard error
    # (`ranker.choose_profile_columns`). Off: on ml-latest-small they did not, the rule
    # dropped them, and the lists were no better for it (README).
    ranker_choose_facet_features: bool = False

    host: str = "127.0.0.1"
    port: int = 8000

    # Requests per tenant ("600/minute"; unset: none), counted in this store
    # (`service.core.ratelimit`): memory:// per process, redis://host:6379 shared.
    tenant_rate_limit: str | None = None
    rate_limit_storage: str = "memory://"

    # Ingest limits: what a client may send in one request.
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_events: int = 1000
    max_batch_items: int = 1000
    rating_min: float = 0.0
    rating_max: float = 5.0
    max_abs_value: float = 1e9
    future_skew_seconds: int = 300
    oldest_event_ts: datetime = datetime(1990, 1, 1, tzinfo=UTC)

    # Development conveniences; refused in production.
    dev_tenant: bool = True
    # The demo tenant `serve` loads on first start (service/demo/): the bundled
    # ml-latest-small movies and a few of its raters with refreshed profiles. Unset:
    # on in development, off in production.
    demo: bool | None = None
    # MovieLens user ids, comma-separated in the environment ("401,454,309").
    demo_users: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["401", "454", "309"], min_length=1)
    # At most this many movies (the demo users' own always included; the most rated
    # fill the rest). Unset: the whole catalog. Tests and quick tries use a few hundred.
    demo_catalog_limit: int | None = Field(default=None, ge=1)
    # The data set's other raters go in too (as `ml-<id>` users, their dates moved to end
    # at the load), so the demo tenant has the activity its recommender models learn from.
    demo_background_raters: bool = True

    @field_validator("demo_users", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("demo_users")
    @classmethod
    def _movielens_ids(cls, value: list[str]) -> list[str]:
        if not all(user.isdigit() for user in value):
            raise ValueError("demo users are MovieLens user ids (digits)")
        return list(dict.fromkeys(value))

    @field_validator("tenant_rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            from service.core.ratelimit import parse_rate

            parse_rate(value)
            return value.strip()
        return None

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            if self.database_url is None:
                raise ValueError("production needs INTEREST_DATABASE_URL (SQLite is one machine)")
            if self.dev_tenant:
                raise ValueError("production must set INTEREST_DEV_TENANT=false")
        if self.llm_backend == "openai" and not (self.llm_base_url and self.llm_model):
            raise ValueError("INTEREST_LLM_BACKEND=openai needs INTEREST_LLM_BASE_URL and "
                             "INTEREST_LLM_MODEL")
        if self.environment == "production" and self.llm_backend == "fake":
            raise ValueError("the fake LLM is for tests only")
        if self.embedding_backend == "openai" and not (self.embedding_base_url
                                                       and self.embedding_model):
            raise ValueError("INTEREST_EMBEDDING_BACKEND=openai needs INTEREST_EMBEDDING_BASE_URL "
                             "and INTEREST_EMBEDDING_MODEL")
        if self.rating_min >= self.rating_max:
            raise ValueError("rating_min must be below rating_max")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'interest.db').resolve()}"

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def demo_enabled(self) -> bool:
        return self.environment == "development" if self.demo is None else self.demo


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
