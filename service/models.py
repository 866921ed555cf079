"""Every table, imported in one place so Alembic and tests see the whole schema."""


def load_all_models() -> None:
    from service.catalog import models as _catalog  # noqa: F401
    from service.chat import models as _chat  # noqa: F401
    from service.ingest import models as _ingest  # noqa: F401
    from service.jobs import models as _jobs  # noqa: F401
    from service.profiles import models as _profiles  # noqa: F401
    from service.recommend import models as _recommend  # noqa: F401
    from service.summaries import models as _summaries  # noqa: F401
    from service.tenants import models as _tenants  # noqa: F401
    from service.users import models as _users  # noqa: F401
