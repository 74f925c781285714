"""Read a user's file into a DataFrame of text cells, checking it by content, not by name.

`read_table(path)` reads CSV/TSV/JSON/JSONL/Parquet/XLSX. Every cell is text ("NA" stays "NA"),
and the index is where each row sits in the file as the user sees it (CSV/JSONL: the line number,
header = line 1; XLSX: the sheet row; JSON: the record number; Parquet: the row number). That
index is what every error message quotes. `df.attrs` carries `source` (the file name), `row_word`
("line", "row" or "record") and `warnings` (notes from reading, as sentences).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile
from pathlib import Path

import pandas as pd

from studio.errors import DataError

SUPPORTED_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".xlsx")
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MIN_ROWS = 4                # fewer than this cannot be split into "learn from" and "check on"
PROJECT_ROOT = Path(__file__).resolve().parent.parent   # where assets/samples lives in a checkout

# Magic bytes of files people upload by mistake: a table's extension says nothing about its content.
_MAGIC = {b"PK\x03\x04": "a ZIP archive (an .xlsx workbook is one)", b"\x89PNG": "a PNG image",
          b"PAR1": "a Parquet file", b"%PDF": "a PDF document", b"\xd0\xcf\x11\xe0": "an old .xls/Office file",
          b"\x1f\x8b": "a gzip archive", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
          b"\x7fELF": "a program", b"MZ": "a Windows program", b"7z\xbc\xaf": "a 7-Zip archive"}
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def safe_upload_name(name: str) -> str:
    """A harmless short base name for storing an upload: no folders, no "..", no control
    characters, at most ~90 characters, the extension kept (lowercased)."""
    base = re.split(r"[/\\]", str(name).replace("\x00", ""))[-1]
    base = "".join(ch for ch in base if ch.isprintable())
    dot = base.rfind(".")
    ext = base[dot:].lower() if dot >= 0 and re.fullmatch(r"\.[A-Za-z0-9]{1,10}", base[dot:]) else ""
    stem = base[:len(base) - len(ext)] if ext else base
    stem = re.sub(r"[^\w .-]+", "_", stem).strip(" ._-")[:80].strip(" ._-")
    if not stem or stem.upper() in _WINDOWS_RESERVED:
        stem = "upload" if not stem else f"upload_{stem}"
    return stem + ext


def read_table(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
               display_name: str | None = None) -> pd.DataFrame:
    """Read a table file into a DataFrame of strings (see the module docstring for index and attrs).

    The extension picks the reader; the content must match it (a PNG named .csv is refused).
    Raises DataError for: a missing, empty, oversized or unreadable file; a header without rows;
    bad encodings, broken quotes or JSON (naming the line)."""
    p = Path(path)
    name = safe_upload_name(display_name or p.name)
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS and display_name:
        ext = Path(name).suffix
    if not p.is_file():
        raise DataError("no such file.", where=name if display_name else str(p),
                        hint="Check the path or upload it again.")
    if ext not in SUPPORTED_EXTENSIONS:
        raise DataError(f"'{ext or 'no extension'}' is not a table format this studio reads.", where=name,
                        hint=f"Save it as one of: {', '.join(SUPPORTED_EXTENSIONS)}.")
    size = p.stat().st_size
    if size > max_bytes:
        raise DataError(f"the file is {_megabytes(size)}; the limit is {_megabytes(max_bytes)}.",
                        where=name, hint="Use a smaller file (fewer rows or shorter texts).")
    if size == 0:
        raise DataError("the file is empty.", where=name, hint="Upload a file with a header row and data rows.")
    with p.open("rb") as fh:
        head = fh.read(8192)
    warnings: list[str] = []
    if ext == ".xlsx":
        frame, word = _read_xlsx(p, name, head, max_bytes, warnings), "row"
    elif ext == ".parquet":
        frame, word = _read_parquet(p, name, head), "row"
    else:
        text = _decode(p.read_bytes(), name, ext, warnings)
        if ext in (".csv", ".tsv"):
            frame, word = _read_delimited(text, name, "\t" if ext == ".tsv" else _sniff(text)), "line"
        else:
            frame, word = _read_json(text, name, ext, warnings)
    frame.columns = _clean_headers(list(frame.columns), warnings)
    if frame.empty:
        raise DataError("the file has a header but no rows.", where=name, hint="Add data rows below the header.")
    frame.attrs.update(source=name, row_word=word, warnings=warnings)
    return frame


# -- reading helpers -------------------------------------------------------------------------------
def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 / 10 else f"{size:,} bytes"


def _kind(value) -> str:
    return {bool: "true/false", int: "number", float: "number", str: "text", list: "list"}.get(type(value), "value")


def _content_error(name: str, ext: str, looks_like: str) -> DataError:
    return DataError(f"the name says {ext} but the content is {looks_like}.", where=name,
                     hint="Upload the table itself, saved in the format its name says.")


def _decode(raw: bytes, name: str, ext: str, warnings: list[str]) -> str:
    """Bytes -> text. UTF-8 (with or without BOM) first; a file that is UTF-8 except for some
    lines is refused naming those lines; a file that is not UTF-8 at all is read as Windows-1252."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", errors="replace")
    for magic, what in _MAGIC.items():
        if raw.startswith(magic):
            raise _content_error(name, ext, what)
    head = raw[:8192]
    control = sum(b < 32 and b not in (9, 10, 13) for b in head)   # ~11% in random bytes
    if b"\x00" in head or control * 20 > len(head):
        raise _content_error(name, ext, "binary data, not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        lines = raw.split(b"\n")
        bad = [i for i, line in enumerate(lines, 1) if not _is_utf8(line)]
        skip = set(bad)
        good = b"\n".join(line for i, line in enumerate(lines, 1) if i not in skip)
        if not good.isascii():   # real UTF-8 characters elsewhere: the bad lines are damage
            shown = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise DataError("is not valid UTF-8, while the rest of the file is (text pasted from "
                            "another encoding?).", where=f"{name} line{'s' if len(bad) > 1 else ''} {shown}",
                            hint="Re-type the odd characters on that line or re-save the file as UTF-8.")
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        shown = ", ".join(map(str, bad[:5])) + (" and more" if len(bad) > 5 else "")
        warnings.append(f"{name} is not UTF-8 (see line{'s' if len(bad) > 1 else ''} {shown}); it was read as Windows-1252 "
                        "(Western European). If accented letters look wrong, re-save the file as UTF-8.")
    if not text.strip():
        raise DataError("the file is empty.", where=name, hint="Upload a file with a header row and data rows.")
    return text


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _sniff(text: str) -> str:
    """The separator of a .csv: whichever of , ; tab | occurs most in the header line (outside quotes)."""
    header = re.sub(r'"[^"]*"', "", text.lstrip("\n\r").split("\n", 1)[0])
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _read_delimited(text: str, name: str, sep: str) -> pd.DataFrame:
    """CSV/TSV via the csv module, which lets each record keep the line it starts on (a quoted
    value may span several lines). Quotes that do not pair up are reported with that line."""
    csv.field_size_limit(max(csv.field_size_limit(), min(len(text) + 1, 2**31 - 1)))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    header, rows, lines, last = None, [], [], 0
    try:
        for row in reader:
            start, last = last + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue   # blank line
            if header is None:
                header = row
                continue
            if len(row) > len(header):
                if any(v.strip() for v in row[len(header):]):
                    raise DataError(f"this row has {len(row)} values but the header has {len(header)} "
                                    "columns.", where=f"{name} line {start}",
                                    hint=f"Put any text that contains '{sep}' in double quotes.")
                row = row[:len(header)]   # trailing empty cells, as spreadsheets export them
            rows.append(row + [""] * (len(header) - len(row)))
            lines.append(start)
    except csv.Error as exc:   # strict mode: a quote never closes, or text follows a closing quote
        what = ("a double quote opens a value here but never closes, so the rest of the file would "
                "be one value." if "unexpected end" in str(exc) else
                "the double quotes in this row do not pair up (a quote that never closes, or text "
                "right after a closing quote).")
        raise DataError(what, where=f"{name} line {last + 1}",
                        hint='Quote whole values, like "Quiet, quick", and write a quote inside one as "".') from None
    return pd.DataFrame(rows, columns=header or [], index=pd.Index(lines, name="line"), dtype=str)


def _read_json(text: str, name: str, ext: str, warnings: list[str]) -> tuple[pd.DataFrame, str]:
    """A .json holds an array of objects (or {"column": [values]}); a .jsonl one object per line.
    A JSON array saved as .jsonl, or JSON Lines saved as .json, are read as what they are."""
    body = text.lstrip()
    if body[:1] not in ("[", "{"):
        raise _content_error(name, ext, "not JSON (it should start with [ or {)")
    if ext == ".jsonl" and body.startswith("["):
        warnings.append(f"{name} holds one JSON array rather than one object per line; read it as an array.")
        ext = ".json"
    if ext == ".jsonl":
        return _read_jsonl(text, name), "line"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":   # several objects, one per line: JSON Lines under a .json name
            try:
                frame = _read_jsonl(text, name)
                warnings.append(f"{name} holds one object per line (JSON Lines); read it as such.")
                return frame, "line"
            except DataError:
                pass
        raise DataError(f"is not valid JSON: {exc.msg}.", where=f"{name} line {exc.lineno}",
                        hint="Fix the JSON there (a missing comma, quote or bracket?).") from None
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if lists and len(lists) == len(data) and len({len(v) for v in lists.values()}) == 1:
            data = [dict(zip(lists, values)) for values in zip(*lists.values())]   # column layout
        elif len(lists) == 1:
            data = next(iter(lists.values()))   # {"data": [...]}
    if not isinstance(data, list):
        raise DataError("holds no list of records.", where=name,
                        hint='Use an array of objects: [{"text": "...", "label": "..."}, ...].')
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise DataError(f"is a {_kind(item)}, not an object with named fields.",
                            where=f"{name} record {i}", hint='Each record looks like {"text": "...", "label": "..."}.')
    return _records_frame(data, range(1, len(data) + 1), "record"), "record"


def _read_jsonl(text: str, name: str) -> pd.DataFrame:
    records, lines = [], []
    for number, line in enumerate(text.split("\n"), 1):   # not splitlines(): U+2028 is valid inside JSON
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"is not valid JSON ({exc.msg}, character {exc.colno}).", where=f"{name} line {number}",
                            hint="Each line must be one complete JSON object.") from None
        if not isinstance(item, dict):
            raise DataError(f"is a {_kind(item)}, not an object with named fields.", where=f"{name} line {number}",
                            hint='Each line looks like {"text": "...", "label": "..."}.')
        records.append(item)
        lines.append(number)
    return _records_frame(records, lines, "line")


def _records_frame(records: list[dict], index, index_name: str) -> pd.DataFrame:
    columns = list(dict.fromkeys(k for rec in records for k in rec))
    rows = [[_cell(rec.get(k)) for k in columns] for rec in records]
    return pd.DataFrame(rows, columns=[str(c) for c in columns], index=pd.Index(list(index), name=index_name),
                        dtype=str)


def _cell(value) -> str:
    """One cell as text: missing -> "", true/false as in JSON, lists/objects as JSON (chat data)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "tolist") and not isinstance(value, str):   # numpy arrays from Parquet
        return _cell(value.tolist())
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _read_xlsx(p: Path, name: str, head: bytes, max_bytes: int, warnings: list[str]) -> pd.DataFrame:
    """The first sheet of a workbook; cached values only (formulas are never evaluated)."""
    if not head.startswith(b"PK\x03\x04"):
        raise _content_error(name, ".xlsx", "not an Excel workbook (an .xlsx is a ZIP archive)")
    try:
        with zipfile.ZipFile(p) as zf:
            names = set(zf.namelist())
            unpacked = sum(info.file_size for info in zf.infolist())
    except zipfile.BadZipFile:
        raise _content_error(name, ".xlsx", "a damaged ZIP archive") from None
    if "xl/workbook.xml" not in names:
        raise _content_error(name, ".xlsx", "a ZIP archive that is not an Excel workbook")
    if unpacked > 20 * max_bytes:   # a "zip bomb" would exhaust memory while unpacking
        raise DataError("the workbook unpacks to more data than allowed.", where=name,
                        hint="Save the table as CSV instead.")
    import openpyxl
    try:
        book = openpyxl.load_workbook(p, read_only=True, data_only=True)
    except Exception as exc:   # openpyxl raises many kinds for damaged workbooks
        raise DataError(f"could not be opened as a workbook ({type(exc).__name__}).", where=name,
                        hint="Open and re-save it in a spreadsheet app, or save it as CSV.") from None
    try:
        rows = [(i, [_cell(v) for v in values]) for i, values in
                enumerate(book.worksheets[0].iter_rows(values_only=True), 1) if any(v is not None for v in values)]
        if len(book.worksheets) > 1:
            warnings.append(f"{name} has {len(book.worksheets)} sheets; only the first, "
                            f"'{book.sheetnames[0]}', was read.")
    finally:
        book.close()
    if not rows:
        raise DataError("the file is empty.", where=name, hint="Put a header row and data rows in the first sheet.")
    width = max(len(values) for _, values in rows)
    header = rows[0][1] + [""] * (width - len(rows[0][1]))
    body = [values + [""] * (width - len(values)) for _, values in rows[1:]]
    return pd.DataFrame(body, columns=header, index=pd.Index([i for i, _ in rows[1:]], name="row"), dtype=str)


def _read_parquet(p: Path, name: str, head: bytes) -> pd.DataFrame:
    import pyarrow.parquet as pq
    with p.open("rb") as fh:
        fh.seek(-4, 2)
        tail = fh.read(4)
    if not (head.startswith(b"PAR1") and tail == b"PAR1"):
        raise _content_error(name, ".parquet", "not a Parquet file (it lacks the PAR1 marks)")
    try:
        table = pq.read_table(p)
    except Exception as exc:   # pyarrow raises ArrowInvalid/OSError/... for damaged files
        raise DataError(f"could not be read as Parquet ({str(exc).splitlines()[0][:200]}).", where=name) from None
    columns = {str(c): [_cell(v) for v in table.column(c).to_pylist()] for c in table.column_names
               if not str(c).startswith("__index_level_")}   # a pandas index saved alongside
    return pd.DataFrame(columns, index=pd.RangeIndex(1, table.num_rows + 1, name="row"), dtype=str)


def _clean_headers(names: list, warnings: list[str]) -> list[str]:
    """Strip spaces (and a stray BOM) around column names; name empty ones; make repeats unique."""
    out, changed = [], []
    for i, raw in enumerate(names, 1):
        name = str(raw).strip().lstrip("\ufeff").strip()
        if name != str(raw):
            changed.append(str(raw))
        name = name or f"column_{i}"
        base, k = name, 2
        while name in out:
            name, k = f"{base}_{k}", k + 1
        out.append(name)
    if changed:
        warnings.append(f"Removed spaces around column names: {', '.join(repr(c) for c in changed[:8])}.")
    if len(set(map(str, names))) < len(names):
        warnings.append("Some column names repeat; later ones got a number: " + ", ".join(out) + ".")
    return out
