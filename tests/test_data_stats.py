"""Statistics, warnings and previews of loaded data (studio.datastats, via studio.data)."""

from __future__ import annotations

import pandas as pd
import pytest

from studio.data import ClassificationData, LabelSet, compute_stats, preview
from studio.datastats import LONGEST_COUNTED, unify_labels, where_rows, whitespace_token_counts


def make_data(train: list[tuple[str, int]], validation: list[tuple[str, int]],
              names=("negative", "positive"), warnings=()) -> ClassificationData:
    frame = lambda rows: pd.DataFrame(rows, columns=["text", "label"])  # noqa: E731
    return ClassificationData(train=frame(train), validation=frame(validation), labels=LabelSet(list(names)),
                              text_column="text", label_column="label", warnings=list(warnings))


BALANCED = [(f"good thing {i}", 1) for i in range(6)] + [(f"bad thing {i}", 0) for i in range(6)]


def test_counts_and_lengths():
    data = make_data(BALANCED, [("fine", 1), ("poor", 0)], warnings=["Read as Windows-1252."])
    stats = compute_stats(data)
    assert (stats.rows_train, stats.rows_validation) == (12, 2)
    assert stats.label_counts == {"train": {"negative": 6, "positive": 6},
                                  "validation": {"negative": 1, "positive": 1}}
    assert stats.token_lengths == [3] * 12 and stats.max_length == 128 and stats.truncated_share == 0.0
    assert (stats.duplicates, stats.overlap) == (0, 0)
    assert stats.warnings == ["Read as Windows-1252."]   # loading warnings are carried over


@pytest.mark.parametrize("train, validation, expected", [
    (BALANCED + [("good thing 0", 1)], [("fine", 1)], ["1 training row(s) repeat"]),
    (BALANCED + [("good thing 0", 0)], [("fine", 1)], ["1 training row(s) repeat", "1 text(s) appear with different labels"]),
    (BALANCED, [("good thing 1", 1), ("bad thing 2", 0)], ["2 validation row(s) also appear in training"]),
    ([(f"good {i}", 1) for i in range(30)] + [(f"bad {i}", 0) for i in range(5)], [("x", 1)], ["unbalanced: 'positive' has 30"]),
    ([(f"good {i}", 1) for i in range(8)] + [(f"bad {i}", 0) for i in range(3)], [("x", 1)], ["fewer than 5 training rows: 'negative' (3)"]),
    (BALANCED, [("fine", 1)], []),
])
def test_quality_warnings(train, validation, expected):
    warnings = compute_stats(make_data(train, validation)).warnings
    assert len(warnings) == len(expected)
    for fragment, warning in zip(expected, warnings):
        assert fragment in warning


def test_truncated_share_with_a_custom_counter():
    data = make_data([("a" * 10, 0), ("b" * 50, 1), ("c" * 200, 0), ("d" * 300, 1)], [("x", 0)])
    stats = compute_stats(data, count_tokens=lambda texts: [len(t) for t in texts], max_length=100)
    assert stats.token_lengths == [10, 50, 200, 300]
    assert stats.truncated_share == 0.5
    assert any("2 training text(s) (50%) are longer than 100 tokens" in w for w in stats.warnings)


def test_huge_cell_is_counted_cheaply_and_as_truncated():
    seen = []

    def counter(texts):
        seen.extend(len(t) for t in texts)
        return whitespace_token_counts(texts)

    stats = compute_stats(make_data([("word " * 200_000, 0), ("short", 1)], [("x", 0)]), count_tokens=counter)
    assert max(seen) == LONGEST_COUNTED   # the counter never sees the whole megabyte
    assert stats.token_lengths[0] > 128 and stats.truncated_share == 0.5


@pytest.mark.parametrize("text, expected", [("", 0), ("two words", 2), ("x" * 80, 10), ("a  b\nc", 3)])
def test_whitespace_counter(text, expected):
    assert whitespace_token_counts([text]) == [expected]


def test_counter_must_return_one_length_per_text():
    with pytest.raises(ValueError):
        compute_stats(make_data(BALANCED, [("x", 0)]), count_tokens=lambda texts: [1])


def test_preview_shortens_cells_and_keeps_row_numbers():
    frame = pd.DataFrame({"text": ["short", "y" * 500, "z"], "label": ["a", "b", "c"]},
                         index=pd.Index([2, 5, 6], name="line"))
    shown = preview(frame, n=2, max_chars=20)
    assert list(shown.index) == [2, 5]
    assert shown.loc[2, "text"] == "short"
    assert shown.loc[5, "text"] == "y" * 19 + "…" and len(shown.loc[5, "text"]) == 20
    assert frame.loc[5, "text"] == "y" * 500   # the original is untouched


def test_preview_of_non_text_cells():
    shown = preview(pd.DataFrame({"n": [1, None], "f": [0.5, 2.0]}), max_chars=3)
    assert shown["n"].tolist()[1] == "" and shown["f"].tolist() == ["0.5", "2.0"]


@pytest.mark.parametrize("index, expected", [([7], "r.csv line 7"), ([3, 4], "r.csv lines 3, 4"),
                                             (list(range(2, 15)), "r.csv lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 3 more")])
def test_where_rows(index, expected):
    frame = pd.DataFrame()
    frame.attrs.update(source="r.csv", row_word="line")
    assert where_rows(frame, index) == expected


@pytest.mark.parametrize("labels, expected, warned", [
    (["1", "1.0", "one"], ["1", "1", "one"], "'1.0'"),
    (["0.0", "1.0"], ["0", "1"], None),          # floats alone become whole numbers, silently
    (["Positive", "positive"], ["Positive", "positive"], "upper/lower case"),
    (["a", "b"], ["a", "b"], None),
])
def test_unify_labels(labels, expected, warned):
    warnings: list[str] = []
    assert unify_labels(pd.Series(labels, dtype=str), warnings).tolist() == expected
    assert (warned is None and not warnings) or (warned and any(warned in w for w in warnings))
