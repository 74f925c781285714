"""What the benchmark runs: cases (task, size, method, epochs) and the data each one trains on.

A case name says it all: `classify-<examples>-<method>` with method `full` or `freeze<k>`, and
`generate-<method>` with method `lora` or `full`. `--cases` picks cases by name prefix, so
`classify-1000` selects classify-1000-full, -freeze2 (the classroom run at the engine's default
depth) and -freeze4, and any well-formed name works, not only the defaults (tests use
`classify-24-freeze1` on a tiny model).

Data: TREC question classification and alpaca instructions from the shared data folder when
present, else the project's own samples. Every case of a task draws its training rows from ONE
seeded permutation (so the 250 rows are inside the 1,000, which are inside the 4,000) and is
checked on the same held-out rows, so rows differ only in what they are meant to differ in.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "assets" / "samples"
SHARED_DATA = Path("/work/shared/data")

# Run order: the slow tutorial baseline last within a case, so a cut-short run has the others.
CLASSIFY_TRAINERS = ("hf-tuned", "studio", "hf-tutorial")
GENERATE_TRAINERS = ("hf-plain", "studio")
TABLE_ORDER = ("hf-tutorial", "hf-tuned", "hf-plain", "studio-fp32", "studio")
# "studio-fp32" is the studio with STUDIO_CPU_BF16=0: on a CPU where the engine picks bf16 (AMX),
# it shows what the number format alone is worth. Run only when asked for with --trainers.
STUDIO_TRAINERS = ("studio", "studio-fp32")

def _classroom_case() -> str:
    """The classroom run: 1,000 examples at the engine's own default freeze depth."""
    from studio.config import TrainSpec
    return f"classify-1000-freeze{TrainSpec().freeze_depth}"


CLASSROOM = _classroom_case()
# Run order: the classroom size and generation first, so a long run has the headline rows early.
# freeze4 stays at every size for the frozen-prefix caching target (epochs 2 and 3 against 1 at
# 4 of 6 blocks frozen) and the cost-per-example one.
DEFAULT_CASES = list(dict.fromkeys([
    "classify-1000-full", CLASSROOM, "classify-1000-freeze4", "generate-lora", "generate-full",
    "classify-250-full", "classify-250-freeze4", "classify-4000-full", "classify-4000-freeze4"]))
QUICK_CASES = ["classify-250-full", "classify-250-freeze4"]
GENERATE_EXAMPLES = 64      # the environment doc's baseline setting: 64 examples, batch 4, 1 epoch
GENERATE_HELD_OUT = 32
CLASSIFY_HELD_OUT = 500     # all of trec_test.csv
SEED = 42

_CLASSIFY = re.compile(r"^classify-(\d+)-(full|freeze(\d+))$")
_GENERATE = re.compile(r"^generate-(lora|full)$")


@dataclass(frozen=True)
class Case:
    name: str
    task: str               # "classify" | "generate"
    n_train: int
    method: str             # "full" | "freeze" | "lora"
    freeze_depth: int
    epochs: float
    batch_size: int
    max_length: int

    @property
    def trainers(self) -> tuple[str, ...]:
        return CLASSIFY_TRAINERS if self.task == "classify" else GENERATE_TRAINERS

    def selected_trainers(self, wanted: set[str] | None) -> list[str]:
        """The case's trainers that `wanted` names (all by default), then studio-fp32 if named."""
        default = [t for t in self.trainers if wanted is None or t in wanted]
        return default + ["studio-fp32"] * bool(wanted and "studio-fp32" in wanted)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_case(name: str, *, epochs: float | None = None) -> Case:
    """A case from its name; `epochs` overrides the default (3 for classification, 1 for generation)."""
    m = _CLASSIFY.match(name)
    if m:
        method = "full" if m.group(2) == "full" else "freeze"
        depth = int(m.group(3) or 0)
        return Case(name, "classify", int(m.group(1)), method, depth, epochs or 3, 16, 128)
    m = _GENERATE.match(name)
    if m:
        return Case(name, "generate", GENERATE_EXAMPLES, m.group(1), 0, epochs or 1, 4, 1024)
    raise ValueError(f"unknown case {name!r}: use classify-<n>-full, classify-<n>-freeze<k>, "
                     "generate-lora or generate-full")


def select_cases(tokens: list[str] | None, *, quick: bool = False, epochs: float | None = None) -> list[Case]:
    """Cases for a run: the defaults (or the quick set, 1 epoch), filtered by name prefixes; a token
    that matches no default but is a well-formed name is run as given."""
    pool = QUICK_CASES if quick else DEFAULT_CASES
    epochs = epochs or (1 if quick else None)
    if not tokens:
        return [parse_case(n, epochs=epochs) for n in pool]
    names: list[str] = []
    for token in tokens:
        hits = [n for n in DEFAULT_CASES if n == token or n.startswith(token + "-")]
        for n in hits or [token]:
            if n not in names:
                names.append(n)
    return [parse_case(n, epochs=epochs) for n in names]


# -- data --------------------------------------------------------------------------------------
def _classify_source(data_dir: Path):
    import pandas as pd
    train, test = data_dir / "trec_train.csv", data_dir / "trec_test.csv"
    if train.is_file() and test.is_file():
        return pd.read_csv(train), pd.read_csv(test).head(CLASSIFY_HELD_OUT), f"TREC ({data_dir})"
    frame = pd.read_csv(SAMPLES / "intents.csv").rename(columns={"message": "text", "intent": "label"})
    frame = frame.sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    cut = len(frame) // 4   # fallback: a quarter held out, the rest to train from
    return frame.iloc[cut:], frame.iloc[:cut], "assets/samples/intents.csv (shared data missing)"


def _generate_source(data_dir: Path):
    path = data_dir / "alpaca_en_demo.json"
    if path.is_file():
        records = json.loads(path.read_text(encoding="utf-8"))
        source = f"alpaca_en_demo ({data_dir})"
    else:
        import pandas as pd
        frame = pd.read_csv(SAMPLES / "pirate.csv")
        records = [{"instruction": p, "input": "", "output": r} for p, r in zip(frame["prompt"], frame["response"])]
        source = "assets/samples/pirate.csv (shared data missing)"
    records = [{k: str(r.get(k) or "") for k in ("instruction", "input", "output")} for r in records]
    held = records[-GENERATE_HELD_OUT:]        # the tail is never trained on
    return records[:-GENERATE_HELD_OUT], held, source


def write_case_data(case: Case, data_dir: Path, out_dir: Path) -> dict:
    """Write the case's training and held-out files into `out_dir`; return their paths and facts.

    Classification: `train.csv` / `test.csv` with columns text,label. Generation: `train.json` /
    `test.json`, alpaca records (instruction, input, output)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if case.task == "classify":
        train, test, source = _classify_source(Path(data_dir))
        train = train[["text", "label"]].sample(frac=1.0, random_state=SEED).head(case.n_train)
        missing = sorted(set(test["label"]) - set(train["label"]))
        if missing:
            raise ValueError(f"{case.name}: labels {missing} are in the held-out set but not in training")
        paths = {"train": out_dir / "train.csv", "test": out_dir / "test.csv"}
        train.to_csv(paths["train"], index=False)
        test[["text", "label"]].to_csv(paths["test"], index=False)
        n_train, n_test = len(train), len(test)
    else:
        train, test, source = _generate_source(Path(data_dir))
        train = train[:case.n_train]
        paths = {"train": out_dir / "train.json", "test": out_dir / "test.json"}
        paths["train"].write_text(json.dumps(train, ensure_ascii=False), encoding="utf-8")
        paths["test"].write_text(json.dumps(test, ensure_ascii=False), encoding="utf-8")
        n_train, n_test = len(train), len(test)
    return {"train_path": str(paths["train"]), "test_path": str(paths["test"]), "source": source,
            "n_train": n_train, "n_test": n_test}
