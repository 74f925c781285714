"""Check a user's table and turn it into training and validation examples.

`load_classification(spec)` reads the files a `DataSpec` names (through `studio.readers`), finds
the text and label columns, rejects what cannot work (with the rows and columns to fix), and
splits the rows. Reading lives in `studio.readers`; column detection, statistics and previews in
`studio.datastats`; all are re-exported here so callers import from one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from studio.datastats import (Columns, DataStats, compute_stats, content_checks,  # noqa: F401
                              detect_columns, label_order, preview, quoted, unify_labels, where_rows)
from studio.errors import ConfigError, DataError
from studio.readers import (DEFAULT_MAX_BYTES, MIN_ROWS, PROJECT_ROOT, SUPPORTED_EXTENSIONS,  # noqa: F401
                            read_table, safe_upload_name)


@dataclass
class LabelSet:
    """The classes, in a fixed order: position in `names` is the id the model predicts."""
    names: list[str]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}


@dataclass
class ClassificationData:
    """Ready-to-tokenize examples. `train`/`validation` have columns "text" (str), "label" (int id)."""
    train: pd.DataFrame
    validation: pd.DataFrame
    labels: LabelSet
    text_column: str
    label_column: str
    warnings: list[str] = field(default_factory=list)


def resolve_path(path: str | Path, base_dir: Path | None = None) -> Path:
    """A relative path is taken from `base_dir`, else the working folder, else the project folder
    (so the bundled samples are found whichever folder the app was started from)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    if base_dir is not None:
        return Path(base_dir) / p
    here = Path.cwd() / p
    return here if here.exists() or not (PROJECT_ROOT / p).exists() else PROJECT_ROOT / p


def load_classification(spec, *, base_dir: Path | None = None, seed: int = 42,
                        max_bytes: int = DEFAULT_MAX_BYTES) -> ClassificationData:
    """Read `spec.path` (and `spec.validation_path`), validate, split; see the module docstring.

    Raises DataError for anything the user must fix, naming the file, rows and columns."""
    if spec.format not in ("auto", "text_label"):
        raise ConfigError(f"'{spec.format}' is a format for generation; classification reads a "
                          "text column and a label column ('auto' or 'text_label').", where="data.format")
    frame = read_table(resolve_path(spec.path, base_dir), max_bytes=max_bytes)
    warnings = list(frame.attrs.get("warnings", []))
    text_col, label_col = _choose_columns(frame, spec)
    rows = _clean(frame, text_col, label_col, warnings)
    if spec.max_rows is not None and len(rows) > spec.max_rows:
        warnings.append(f"Used a random {spec.max_rows} of the {len(rows)} rows (max_rows).")
        rows = rows.sample(n=spec.max_rows, random_state=seed).sort_index()

    if spec.validation_path:
        val_frame = read_table(resolve_path(spec.validation_path, base_dir), max_bytes=max_bytes)
        warnings += val_frame.attrs.get("warnings", [])
        for col in (text_col, label_col):
            _require_column(val_frame, col)
        val_rows = _clean(val_frame, text_col, label_col, warnings)
        _require_classes(rows, label_col, frame)
        train, validation = rows, val_rows
        unseen = sorted(set(validation["label"]) - set(train["label"]))
        if unseen:
            bad = validation.index[validation["label"].isin(unseen)]
            raise DataError(f"label(s) {quoted(unseen)} appear in the validation file but never in "
                            "training, so the model cannot learn them.", where=where_rows(val_frame, bad),
                            hint="Add training examples of those labels or remove those rows.")
    else:
        _require_classes(rows, label_col, frame)
        if len(rows) < MIN_ROWS:
            raise DataError(f"has only {len(rows)} usable rows; at least {MIN_ROWS} are needed "
                            "(some to learn from, some to check on).", where=frame.attrs.get("source"))
        train, validation = _split(rows, spec.validation_split, seed, warnings)

    labels = LabelSet(sorted(set(train["label"]), key=label_order))
    ids = labels.label2id
    out = [pd.DataFrame({"text": part["text"].astype(str).to_numpy(),
                         "label": part["label"].map(ids).astype("int64").to_numpy()})
           for part in (train, validation)]
    warnings += content_checks(out[0], out[1], labels.names)[2]
    return ClassificationData(train=out[0], validation=out[1], labels=labels, text_column=text_col,
                              label_column=label_col, warnings=_unique(warnings))


# -- steps -----------------------------------------------------------------------------------------
def _choose_columns(frame: pd.DataFrame, spec) -> tuple[str, str]:
    """The spec's columns when set (and present), detection for the rest."""
    for col in (spec.text_column, spec.label_column):
        if col:
            _require_column(frame, col)
    text, label = spec.text_column, spec.label_column
    if not (text and label):
        found = detect_columns(frame, "classify", text=text, label=label)
        text, label = text or found.text, label or found.label
    if text == label:
        raise DataError(f"the text column and the label column are both '{text}'; they must differ.",
                        where=frame.attrs.get("source"), hint="Pick two different columns.")
    return text, label


def _require_column(frame: pd.DataFrame, name: str) -> None:
    if name not in frame.columns:
        raise DataError(f"there is no column '{name}'.", where=frame.attrs.get("source"),
                        hint=f"Columns in this file: {', '.join(map(str, frame.columns))}.")


def _clean(frame: pd.DataFrame, text_col: str, label_col: str, warnings: list[str]) -> pd.DataFrame:
    """Rows as (text, label) strings, index = file position. Empty labels are an error (listing the
    rows); rows with empty text are dropped with a warning; number-like labels are unified."""
    rows = pd.DataFrame({"text": frame[text_col].astype(str), "label": frame[label_col].astype(str).str.strip()})
    no_text = rows["text"].str.strip() == ""
    blank = no_text & (rows["label"] == "")
    no_label = (rows["label"] == "") & ~blank
    if no_label.any():
        raise DataError(f"{int(no_label.sum())} row(s) have no label in column '{label_col}'.",
                        where=where_rows(frame, rows.index[no_label]),
                        hint="Fill in a label for each row, or delete those rows.")
    if no_text.any():
        what = "completely empty" if blank[no_text].all() else f"empty in the text column '{text_col}'"
        warnings.append(f"Skipped {int(no_text.sum())} row(s) {what}: {where_rows(frame, rows.index[no_text])}.")
        rows = rows[~no_text]
    if rows.empty:
        raise DataError(f"no row has both a text (column '{text_col}') and a label (column '{label_col}').",
                        where=frame.attrs.get("source"))
    rows["label"] = unify_labels(rows["label"], warnings)
    return rows


def _require_classes(rows: pd.DataFrame, label_col: str, frame: pd.DataFrame) -> None:
    counts = rows["label"].value_counts()
    where = frame.attrs.get("source")
    if len(counts) < 2:
        raise DataError(f"column '{label_col}' has only one label ('{counts.index[0]}'); a classifier "
                        "needs at least two.", where=where,
                        hint="Add examples of another class, or pick another label column.")
    if len(counts) > 20 and len(counts) > 0.5 * len(rows):
        raise DataError(f"column '{label_col}' has {len(counts)} different values in {len(rows)} rows; "
                        "that looks like free text, not a label.", where=where,
                        hint="Pick the column that holds a few repeated categories as the label.")


def _split(rows: pd.DataFrame, share: float, seed: int, warnings: list[str]):
    """Hold out `share` of the rows, keeping each label's share equal in both parts (stratified).
    Labels with a single example stay in training: held out, the model could never learn them."""
    from sklearn.model_selection import train_test_split
    counts = rows["label"].value_counts()
    solo = rows["label"].isin(counts.index[counts < 2])
    if solo.any():
        warnings.append(f"Label(s) {quoted(sorted(rows['label'][solo]))} have a single example; it is "
                        "used for training only, so the validation score cannot measure them.")
    rest = rows[~solo]
    if len(rest) < 2:
        raise DataError("every label appears only once, so nothing is left to check the model on.",
                        hint="Add at least two examples of each label.")
    try:
        train, val = train_test_split(rest, test_size=share, random_state=seed, stratify=rest["label"])
    except ValueError:   # fewer held-out rows than labels: a stratified split is impossible
        warnings.append("Too few rows to keep every label's share equal in training and validation; "
                        "the split is random instead.")
        train, val = train_test_split(rest, test_size=share, random_state=seed)
        unseen = ~val["label"].isin(set(train["label"]))
        train, val = pd.concat([train, val[unseen]]), val[~unseen]
        if val.empty:
            raise DataError(f"has too few rows ({len(rows)}) to hold any out for validation.",
                            hint="Add more rows or provide a separate validation file.")
    return pd.concat([train, rows[solo]]), val


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
