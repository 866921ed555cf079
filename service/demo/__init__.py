"""The demo tenant: the bundled ml-latest-small movies and a few of its raters.

`interest-tracker serve` (and so `make run`) loads it on first start, in a thread of the
running service (`BackgroundDemo`: it answers at once; /readyz and the inspector show
the load's progress), so a newcomer's first lists are explained recommendations.
Everything goes in through the service's own functions, exactly as through the API:
catalog upsert (embedded into the tenant's item collection), rating events, then one
profile refresh per user with the configured LLM.

Loading is idempotent and resumable. A marker file in the data folder is written only
after every step succeeded; until then each start runs the load again, and every step
skips what is already there: unchanged items are left alone and only unindexed ones
are embedded, a user's ratings go in as one all-or-nothing batch (so a user with any
stored event has all of them), and only users without a refreshed profile (or made
stale since) are refreshed. A failed refresh (the model is down) is reported, the
rest still loads, and the marker stays unwritten so the next start retries it; until
then that user gets the popular fallback.

The package, by job: `sessions` dates a MovieLens history to the present and cuts it
into sessions; `load` puts the catalog, the ratings and the other raters into the tenant
and trains its models; `replay` replays the demo users session by session with a profile
refresh after each; `state` keeps the marker and decides whether a load is needed;
`background` runs the load in a thread and reports its progress.
"""

from service.demo.background import TASTES, BackgroundDemo, DemoStatus
from service.demo.load import demo_catalog, load_demo, movie_item
from service.demo.sessions import (
    MAX_HISTORY_SPAN,
    MAX_SESSIONS,
    NEWEST_BEFORE_LOAD,
    REFRESH_AFTER,
    SESSION_GAP,
    SESSION_SPACING,
    background_events,
    demo_sessions,
    demo_user_id,
    newest_rating_at,
    rating_events,
)
from service.demo.state import (
    DEMO_TENANT,
    KEY_FILE,
    MARKER_FILE,
    RENEW_AFTER,
    STAGES,
    DemoCancelled,
    DemoError,
    DemoLoad,
    ProgressHook,
)

__all__ = [
    "DEMO_TENANT", "KEY_FILE", "MARKER_FILE", "MAX_HISTORY_SPAN", "MAX_SESSIONS",
    "NEWEST_BEFORE_LOAD", "REFRESH_AFTER", "RENEW_AFTER", "SESSION_GAP", "SESSION_SPACING",
    "STAGES", "TASTES", "BackgroundDemo", "DemoCancelled", "DemoError", "DemoLoad",
    "DemoStatus", "ProgressHook", "background_events", "demo_catalog", "demo_sessions",
    "demo_user_id", "load_demo", "movie_item", "newest_rating_at", "rating_events",
]
