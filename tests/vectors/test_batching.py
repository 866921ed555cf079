"""How large inputs are cut into batches of nearly equal token length (no model needed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.vectors.embeddings import length_batches


@given(st.lists(st.integers(min_value=1, max_value=256), max_size=300),
       st.integers(min_value=1, max_value=64))
def test_every_text_once_and_padding_bounded(lengths: list[int], batch_size: int) -> None:
    batches = length_batches(lengths, batch_size)
    assert sorted(n for b in batches for n in b) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        if len(batch) > 1:
            real = sum(lengths[n] for n in batch)
            padded = max(lengths[n] for n in batch) * len(batch)
            assert padded <= 1.05 * real


def test_equal_lengths_fill_batches_and_an_outlier_waits_alone() -> None:
    lengths = [20] * 10 + [200] + [21] * 5
    batches = length_batches(lengths, batch_size=4)
    assert [len(b) for b in batches] == [4, 4, 4, 3, 1]
    assert batches[-1] == [10]  # the long text is never padded into, nor pads, the others
    # Sorting by characters (what sentence-transformers does) put it among short texts.
    assert {lengths[n] for n in batches[2]} == {20, 21}
