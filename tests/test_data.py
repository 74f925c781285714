"""Reading, checking and splitting user data (studio.data).

The first test walks through every input-file case of docs/reliability.md: each case writes a
file into tmp_path and expects either a successful load (checked by a small predicate) or a
DataError whose message names the place to fix (line, column, rows).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from studio.config import DataSpec
from studio.data import (DEFAULT_MAX_BYTES, ClassificationData, detect_columns, load_classification,
                         read_table, safe_upload_name)
from studio.errors import DataError

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples"

ROWS = [("Boils fast and switches off reliably", "positive"), ("Quiet, quick, and cheap", "positive"),
        ("Comfortable from the first day", "positive"), ("Still works after two years", "positive"),
        ("The best lamp I have owned", "positive"), ("Naïve me expected less; it is great", "positive"),
        ("Leaks from the bottom", "negative"), ("Broke within a week", "negative"),
        ("The app crashes on start", "negative"), ("Too small and too loud", "negative"),
        ("Arrived scratched and late", "negative"), ("Support never answered", "negative")]


def csv_of(rows, header: str = "text,label", sep: str = ",", encoding: str = "utf-8") -> bytes:
    """A CSV with every text quoted (texts hold commas); line 1 is the header, rows from line 2."""
    lines = [header] + [f'"{t}"{sep}{label}' for t, label in rows]
    return ("\n".join(lines) + "\n").encode(encoding)


def jsonl_of(records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def texts(data: ClassificationData) -> list[str]:
    return list(data.train["text"]) + list(data.validation["text"])


def oversized(path: Path) -> None:   # a sparse file: over the limit without writing 50 MB
    path.write_bytes(b"text,label\n")
    os.truncate(path, DEFAULT_MAX_BYTES + 1)


def not_a_workbook() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


def parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame(ROWS, columns=["text", "label"]).to_parquet(buffer)
    return buffer.getvalue()


def empty_label_after_multiline() -> bytes:
    # lines: 1 header, 2-4 one quoted 3-line text, 5 a row, 6 a row without label
    return ('text,label\n"first line\nsecond line\nthird line",positive\n'
            + "".join(f'"{t}",{label}\n' for t, label in ROWS[6:7]) + '"no label here",\n'
            + "".join(f'"{t}",{label}\n' for t, label in ROWS[:6] + ROWS[7:])).encode()


@dataclass
class Case:
    name: str                                   # file name as uploaded (may be hostile)
    content: bytes | Callable[[Path], None]     # bytes, or a function writing the file
    expect: tuple[str, ...] | Callable[[ClassificationData], bool]   # error fragments, or a check
    spec: dict = field(default_factory=dict)


CASES = {
    "empty file": Case("e.csv", b"", ("e.csv", "empty")),
    "header only": Case("h.csv", b"text,label\n", ("no rows",)),
    "utf-8 bom": Case("b.csv", b"\xef\xbb\xbf" + csv_of(ROWS),
                      lambda d: d.text_column == "text" and d.labels.names == ["negative", "positive"]),
    "cp1252 bytes": Case("w.csv", csv_of(ROWS + [("Café crème, très bien", "positive")], encoding="cp1252"),
                         lambda d: "Café crème, très bien" in texts(d)
                         and any("Windows-1252" in w for w in d.warnings)),
    "one bad-encoding row": Case("u.csv", csv_of(ROWS[:3]) + b'"caf\xe9 au lait",positive\n' + csv_of(ROWS[3:], header="")[1:],
                                 ("u.csv line 5", "UTF-8")),
    "headers with spaces": Case("s.csv", csv_of(ROWS, header=" text ,  label "),
                                lambda d: (d.text_column, d.label_column) == ("text", "label")
                                and any("spaces" in w for w in d.warnings)),
    "missing text column": Case("m.csv", csv_of(ROWS), ("'review'", "text, label"), {"text_column": "review"}),
    "wrong label column": Case("m.csv", csv_of(ROWS), ("'sentiment'", "text, label"), {"label_column": "sentiment"}),
    "no label column at all": Case("one.csv", b"text\n" + "\n".join(f'"{t}"' for t, _ in ROWS).encode(),
                                   ("two columns", "Columns in this file: text")),
    "NA-like text kept": Case("na.csv", csv_of(ROWS + [("NA", "positive"), ("null", "negative"), ("None", "positive")]),
                              lambda d: {"NA", "null", "None"} <= set(texts(d))),
    "empty labels listed": Case("l.csv", csv_of(ROWS[:2] + [("no label", "")] + ROWS[2:4] + [("none either", "")] + ROWS[4:]),
                                ("l.csv lines 4, 7", "no label", "'label'")),
    "a single class": Case("c.csv", csv_of([(t, "positive") for t, _ in ROWS]), ("only one label", "'positive'")),
    "labels of mixed types": Case("t.jsonl", jsonl_of({"text": t, "label": v} for (t, _), v in
                                                      zip(ROWS, [1, 1.0, "1", 1, 1, "1.0", "one", "one", "one", "one", "one", "one"])),
                                  lambda d: d.labels.names == ["1", "one"] and any("'1.0'" in w for w in d.warnings)),
    "10,000-character cell": Case("k.csv", csv_of(ROWS + [("word " * 2000, "positive")]),
                                  lambda d: max(map(len, texts(d))) == 10_000),
    "1,000,000-character cell": Case("m.csv", csv_of(ROWS + [("x" * 1_000_000, "negative")]),
                                     lambda d: max(map(len, texts(d))) == 1_000_000),
    "jsonl with a broken line": Case("j.jsonl", jsonl_of({"text": t, "label": label} for t, label in ROWS[:3])
                                     + b'{"text": "cut off", "label": \n' + jsonl_of({"text": t, "label": label} for t, label in ROWS[3:]),
                                     ("j.jsonl line 4", "not valid JSON")),
    "json array saved as .jsonl": Case("a.jsonl", json.dumps([{"text": t, "label": label} for t, label in ROWS]).encode(),
                                       lambda d: len(texts(d)) == len(ROWS) and any("JSON array" in w for w in d.warnings)),
    "semicolon-separated csv": Case("semi.csv", csv_of(ROWS, header="text;label", sep=";"),
                                    lambda d: "Quiet, quick, and cheap" in texts(d)),
    "multi-line quoted fields": Case("ml.csv", csv_of(ROWS + [("first line\nsecond line", "positive")]),
                                     lambda d: "first line\nsecond line" in texts(d)),
    "line numbers after a multi-line field": Case("ml2.csv", empty_label_after_multiline(), ("ml2.csv line 6",)),
    "unterminated quote": Case("q.csv", csv_of(ROWS[:2]) + b'"never closed,negative\n' + csv_of(ROWS[2:], header="")[1:],
                               ("q.csv line 4", "quote")),
    "unterminated quote in the last row": Case("q3.csv", csv_of(ROWS) + b'"open to the end,negative\n', ("q3.csv line 14", "never closes")),
    "text after a closing quote": Case("q2.csv", csv_of(ROWS[:3]) + b'"Best" kettle ever,positive\n' + csv_of(ROWS[3:], header="")[1:],
                                       ("q2.csv line 5", "do not pair up")),
    "over the size limit": Case("big.csv", oversized, ("big.csv", "limit is 50.0 MB")),
    "png named .csv": Case("img.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), ("img.csv", "PNG image")),
    "parquet named .csv": Case("p.csv", parquet_bytes(), ("p.csv", "Parquet")),
    "random bytes named .csv": Case("r.csv", bytes(range(1, 256)) * 8, ("r.csv", "binary data")),
    "csv named .xlsx": Case("x.xlsx", csv_of(ROWS), ("x.xlsx", "not an Excel workbook")),
    "other zip named .xlsx": Case("d.xlsx", not_a_workbook(), ("d.xlsx", "not an Excel workbook")),
    "csv named .parquet": Case("x.parquet", csv_of(ROWS), ("x.parquet", "not a Parquet file")),
    "csv named .jsonl": Case("x.jsonl", csv_of(ROWS), ("x.jsonl", "not JSON")),
    "hostile name ../../x.csv": Case("../../x.csv", csv_of(ROWS), lambda d: len(texts(d)) == len(ROWS)),
    "hostile name 5000 chars": Case("a" * 5000 + ".csv", csv_of(ROWS), lambda d: len(texts(d)) == len(ROWS)),
    "hostile name with NUL and slashes": Case("..\\evil\x00/..\\r.csv", csv_of(ROWS), lambda d: len(texts(d)) == len(ROWS)),
    "hostile name ..": Case("..", csv_of(ROWS), ("not a table format",)),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_input_file_case(case: Case, tmp_path: Path):
    path = tmp_path / safe_upload_name(case.name)
    assert path.resolve().parent == tmp_path.resolve() and len(path.name) <= 100
    if callable(case.content):
        case.content(path)
    else:
        path.write_bytes(case.content)
    spec = DataSpec(path=str(path), **case.spec)
    if callable(case.expect):
        assert case.expect(load_classification(spec))
        return
    with pytest.raises(DataError) as err:
        load_classification(spec)
    for fragment in case.expect:
        assert fragment in err.value.user_message


@pytest.mark.parametrize("name, expected", [
    ("reviews.csv", "reviews.csv"), ("../../x.csv", "x.csv"), ("..", "upload"), (".csv", "upload.csv"),
    ("C:\\Users\\me\\Data.CSV", "Data.csv"), ("a\x00b.tsv", "ab.tsv"), ("a<b>|c.json", "a_b_c.json"),
    ("NUL.csv", "upload_NUL.csv"), ("x" * 5000 + ".xlsx", "x" * 80 + ".xlsx"),
])
def test_safe_upload_name(name, expected):
    assert safe_upload_name(name) == expected


@pytest.mark.parametrize("columns, task, expected", [
    ({"review": ["a long text here"] * 4, "sentiment": ["pos", "neg"] * 2}, "classify", ("review", "sentiment", "text_label")),
    ({"Label ": ["a", "b"] * 2, "Message": ["hello there", "hi"] * 2}, "classify", ("Message", "Label ", "text_label")),
    ({"id": ["1", "2", "3", "4", "5", "6"], "c1": ["short", "much longer text", "words words words"] * 2,
      "c2": ["x", "y", "x", "y", "x", "y"]}, "classify", ("c1", "c2", "text_label")),
    ({"instruction": ["do"], "input": [""], "output": ["done"]}, "generate", ("input", None, "alpaca")),
    ({"question": ["q"], "answer": ["a"]}, "generate", (None, None, "prompt_response")),
    ({"messages": ["[]"]}, "generate", ("messages", None, "chat")),
])
def test_detect_columns(columns, task, expected):
    cols = detect_columns(pd.DataFrame(columns), task)
    assert (cols.text, cols.label, cols.format) == expected


@pytest.mark.parametrize("columns, task", [({"foo": ["a"], "bar": ["b"]}, "generate"),
                                           ({"only": ["a", "b"]}, "classify"),
                                           ({"a": ["1", "2", "3", "4"], "b": ["5", "6", "7", "8"]}, "classify")])
def test_detect_columns_refuses(columns, task):
    with pytest.raises(DataError, match="Columns in this file"):
        detect_columns(pd.DataFrame(columns), task)


def write(path: Path, rows, header="text,label") -> Path:
    path.write_bytes(csv_of(rows, header=header))
    return path


def test_split_is_stratified_and_repeatable(tmp_path):
    rows = [(f"common example {i}", "a") for i in range(80)] + [(f"rare example {i}", "b") for i in range(20)]
    spec = DataSpec(path=str(write(tmp_path / "s.csv", rows)), validation_split=0.2)
    data = load_classification(spec, seed=1)
    assert data.validation["label"].value_counts().to_dict() == {0: 16, 1: 4}
    assert list(data.train.columns) == ["text", "label"] and str(data.train["label"].dtype) == "int64"
    assert load_classification(spec, seed=1).validation.equals(data.validation)
    assert not load_classification(spec, seed=2).validation.equals(data.validation)


def test_single_example_class_stays_in_training(tmp_path):
    data = load_classification(DataSpec(path=str(write(tmp_path / "s.csv", ROWS + [("lonely", "neutral")]))))
    assert data.labels.names == ["negative", "neutral", "positive"]
    assert "lonely" in set(data.train["text"])
    assert any("single example" in w for w in data.warnings)


def test_validation_file_with_unseen_label_names_rows(tmp_path):
    train = write(tmp_path / "train.csv", ROWS)
    val = write(tmp_path / "val.csv", ROWS[:2] + [("meh", "neutral")])
    with pytest.raises(DataError, match=r"val\.csv line 4.*'neutral'"):
        load_classification(DataSpec(path=str(train), validation_path=str(val)))
    ok = load_classification(DataSpec(path=str(train), validation_path=str(write(tmp_path / "v2.csv", ROWS[:4]))))
    assert (len(ok.train), len(ok.validation)) == (len(ROWS), 4)


def test_max_rows_and_relative_paths(tmp_path):
    write(tmp_path / "r.csv", ROWS * 3)
    data = load_classification(DataSpec(path="r.csv", max_rows=10), base_dir=tmp_path)
    assert len(data.train) + len(data.validation) == 10
    assert any("max_rows" in w for w in data.warnings)


def test_row_numbers_are_file_lines(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text('text,label\n"two\nlines",a\n\nnext,b\n', encoding="utf-8")
    assert list(read_table(path).index) == [2, 5]


TRICKY = [("plain", "a"), ("with, comma", "b"), ('say "hi"', "a"), ("two\nlines", "b"), ("NA", "a"),
          ("ünïcødé ✓", "b"), ("  padded  ", "a")]


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".json", ".jsonl", ".parquet", ".xlsx"])
def test_every_format_reads_the_same_rows(tmp_path, ext):
    frame = pd.DataFrame(TRICKY, columns=["text", "label"])
    path = tmp_path / f"data{ext}"
    {".csv": lambda: frame.to_csv(path, index=False), ".tsv": lambda: frame.to_csv(path, sep="\t", index=False),
     ".json": lambda: frame.to_json(path, orient="records", force_ascii=False),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True, force_ascii=False),
     ".parquet": lambda: frame.to_parquet(path, index=False),
     ".xlsx": lambda: frame.to_excel(path, index=False)}[ext]()
    table = read_table(path)
    assert list(table.columns) == ["text", "label"]
    assert list(map(tuple, table.to_numpy().tolist())) == TRICKY


@pytest.mark.parametrize("name, text_col, label_col, labels, rows", [
    ("reviews.csv", "text", "label", ["negative", "positive"], (300, 400)),
    ("intents.csv", "message", "intent",
     ["billing", "cancel_subscription", "delivery", "password_reset", "praise", "refund"], (250, 350)),
])
def test_samples_load_cleanly(name, text_col, label_col, labels, rows):
    data = load_classification(DataSpec(path=str(SAMPLES / name)))
    assert (data.text_column, data.label_column, data.labels.names) == (text_col, label_col, labels)
    assert rows[0] <= len(data.train) + len(data.validation) <= rows[1]
    assert data.warnings == []
