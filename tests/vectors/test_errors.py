"""The one answer to a vector store that does not answer."""

from __future__ import annotations

import pytest

from service.core.errors import ApiError
from service.vectors.errors import vector_store_call


def test_any_client_error_is_one_503_that_says_nothing_changed() -> None:
    for failure in (ConnectionError("refused"), ValueError("bad response"), TimeoutError()):
        with pytest.raises(ApiError) as caught, vector_store_call():
            raise failure
        assert (caught.value.status, caught.value.code) == (503, "vector_store_unavailable")
        assert caught.value.message == (f"The vector store did not answer "
                                        f"({type(failure).__name__}); nothing changed.")
        assert caught.value.__cause__ is failure

