"""The benchmark harness (benchmarks/): FLOP formula, case names, derived rates, regression deltas,
and a smoke run of the whole harness on tiny random models so a broken harness fails CI."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:       # `benchmarks` is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_train, report  # noqa: E402
from benchmarks.cases import parse_case, select_cases  # noqa: E402
from benchmarks.flops import flops_per_token  # noqa: E402


@pytest.mark.parametrize("method,depth,head,expected", [
    ("full", 0, 0, 6 * 30),
    ("freeze", 2, 0, 2 * 20 + 6 * 10),      # frozen bottom: forward only
    ("freeze", 3, 0, 2 * 30),               # everything frozen: a linear probe on top
    ("lora", 0, 0, 4 * 30),                 # forward + input gradients, no weight gradients
    ("full", 0, 5, 6 * 35),                 # a causal LM's lm_head counts like a block
    ("lora", 0, 5, 4 * 35),
])
def test_flops_per_token(method, depth, head, expected):
    assert flops_per_token([10, 10, 10], method, depth, head) == expected


@pytest.mark.parametrize("tokens,quick,names", [
    (None, True, ["classify-250-full", "classify-250-freeze4"]),
    (["classify-1000"], False, ["classify-1000-full", "classify-1000-freeze2", "classify-1000-freeze4"]),
    (["generate"], False, ["generate-lora", "generate-full"]),
    (["classify-24-freeze1"], False, ["classify-24-freeze1"]),   # not a default: parsed as given
])
def test_case_selection(tokens, quick, names):
    assert [c.name for c in select_cases(tokens, quick=quick)] == names


@pytest.mark.parametrize("name,task,n,method,depth,epochs", [
    ("classify-250-full", "classify", 250, "full", 0, 3),
    ("classify-4000-freeze4", "classify", 4000, "freeze", 4, 3),
    ("generate-lora", "generate", 64, "lora", 0, 1),
])
def test_parse_case(name, task, n, method, depth, epochs):
    c = parse_case(name)
    assert (c.task, c.n_train, c.method, c.freeze_depth, c.epochs) == (task, n, method, depth, epochs)


def test_studio_fp32_runs_only_when_asked_for():
    case = parse_case("generate-lora")
    assert case.selected_trainers(None) == ["hf-plain", "studio"]
    assert case.selected_trainers({"studio", "studio-fp32"}) == ["studio", "studio-fp32"]
    row = {"trainer": "studio", "precision": "bf16"}
    assert report.label(row) == "studio (bf16)" and report.label({**row, "precision": "fp32"}) == "studio"


def test_the_classroom_target_reads_the_row_at_the_engines_default_depth():
    """The classroom run is the studio's defaults: its row is the one at the config's freeze depth
    (not freeze 4, which stays for the caching target), compared with HF's full fine-tuning."""
    from benchmarks.cases import CLASSROOM
    from studio.config import TrainSpec
    assert CLASSROOM == f"classify-1000-freeze{TrainSpec().freeze_depth}" != "classify-1000-freeze4"
    rows = [{"case": "classify-1000-full", "trainer": "hf-tuned", "ok": True, "wall_s": 30.0, "accuracy": 0.95},
            {"case": CLASSROOM, "trainer": "studio", "ok": True, "wall_s": 10.0, "accuracy": 0.945},
            {"case": "classify-1000-freeze4", "trainer": "studio", "ok": True, "wall_s": 5.0, "accuracy": 0.90}]
    targets = {t["target"]: t for t in report.check_targets({"runs": rows})}
    speed = targets["classroom run >= 2x faster end to end than well-configured HF (full FT)"]
    accuracy = targets["... at accuracy no more than 1 point lower"]
    assert (speed["value"], speed["passed"]) == ("3.00x", True)
    assert (accuracy["value"], accuracy["passed"]) == ("+0.5 pt lower", True)
    # The later-epochs target is at freeze depth 4 of 6 only; other depths' ratios are not judged.
    rows[1].update(epoch_pct_of_first=[80.0, 80.0]), rows[2].update(epoch_pct_of_first=[45.0, 50.0])
    judged = [t["target"] for t in report.check_targets({"runs": rows}) if "epochs 2+" in t["target"]]
    assert judged == ["classify-1000-freeze4: epochs 2+ each <= 40% of epoch 1"]


def test_parse_case_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown case"):
        parse_case("classify-ten-full")


def _row(trainer, wall, acc, epochs=(4.0, 1.0, 1.0)):
    return {"case": "classify-100-freeze4", "trainer": trainer, "ok": True, "wall_s": wall, "accuracy": acc,
            "epoch_s": list(epochs), "n_train": 100, "tokens_per_epoch": 2000, "flops_per_token": 1e6,
            "max_rss_mib": 500.0}


def test_derive_rates_and_compare_flags_regressions():
    case = parse_case("classify-100-freeze4").to_dict()
    row = report.derive(_row("studio", 10.0, 0.9), case, peak_gflops=10.0)
    assert row["compute_s"] == 6.0 and row["samples_per_s"] == 50.0      # 300 samples / 6 s
    assert row["gflops"] == pytest.approx(1.0, rel=1e-3)                 # 1e6 * 6000 tokens / 6 s
    assert row["peak_share"] == pytest.approx(0.1, rel=1e-3)
    assert row["epoch_pct_of_first"] == [25.0, 25.0]
    old = {"peak": {"gflops": 10.0}, "runs": [row]}
    same = {"peak": {"gflops": 10.0}, "runs": [row]}
    assert report.compare(same, old)[1] == 0
    worse = {"peak": {"gflops": 10.0}, "runs": [report.derive(_row("studio", 12.0, 0.85), case, 10.0)]}
    text, regressions = report.compare(worse, old)
    assert regressions == 1 and "slower" in text and "less accurate" in text


def test_share_of_peak_uses_the_peak_measured_beside_the_row():
    """A row carrying the peak its own process measured (before/after training) is judged against
    the better of those two, not against the run's peak from minutes earlier."""
    case = parse_case("classify-100-freeze4").to_dict()
    row = report.derive({**_row("studio", 10.0, 0.9), "local_peak": {"before": 4.0, "after": 5.0}}, case, 10.0)
    assert row["peak_gflops"] == 5.0
    assert row["peak_share"] == pytest.approx(0.2, rel=1e-3) and row["run_peak_share"] == pytest.approx(0.1, rel=1e-3)
    assert report.row_peak({"local_peak": {"before": None, "after": None}}, 10.0) == 10.0


def test_repeated_rounds_collapse_to_medians():
    case = parse_case("classify-100-freeze4").to_dict()
    rounds = [report.derive({**_row("studio", wall, acc, epochs=(e, e / 2, e / 2)), "round": i}, case, 10.0)
              for i, (wall, acc, e) in enumerate([(10.0, 0.90, 4.0), (30.0, 0.80, 12.0), (12.0, 0.94, 5.0)])]
    rounds.append({"case": "classify-100-freeze4", "trainer": "hf-tuned", "ok": True, "wall_s": 20.0, "round": 0})
    rows = {r["trainer"]: r for r in report.medians(rounds)}
    studio = rows["studio"]
    assert studio["wall_s"] == 12.0 and studio["accuracy"] == 0.9 and studio["rounds"] == 3
    assert studio["epoch_s"] == [5.0, 2.5, 2.5]                  # lists: from the median round
    assert [p["wall_s"] for p in studio["per_round"]] == [10.0, 30.0, 12.0]
    assert rows["hf-tuned"]["wall_s"] == 20.0 and "per_round" not in rows["hf-tuned"]   # one round: as it was
    assert "| classify-100-freeze4 | studio | 37.5 | 12.5 | 30.0 | 30.0 samples/s |" in \
        report.rounds_table({"runs": list(rows.values())})


def test_rounds_with_different_seeds_average_their_quality():
    """--seeds: timings are still medians, but accuracy is the mean over the seeds, and each
    seed's accuracy is listed."""
    case = parse_case("classify-100-freeze4").to_dict()
    rounds = [report.derive({**_row("studio", wall, acc, epochs=(e, e / 2, e / 2)), "round": i, "seed": seed},
                            case, 10.0)
              for i, (wall, acc, e, seed) in enumerate([(10.0, 0.90, 4.0, 42), (30.0, 0.80, 12.0, 1), (12.0, 0.94, 5.0, 2)])]
    (studio,) = report.medians(rounds)
    assert studio["wall_s"] == 12.0 and studio["accuracy"] == pytest.approx(0.88)
    assert [(p["seed"], p["accuracy"]) for p in studio["per_round"]] == [(42, 0.90), (1, 0.80), (2, 0.94)]
    table = report.seeds_table({"runs": [studio]})
    assert "| classify-100-freeze4 | studio | 0.800 | 0.940 | 0.900 | 0.880 |" in table   # seeds 1, 2, 42
    assert report.seeds_table({"runs": report.medians([dict(r, seed=42) for r in rounds])}) is None


def _write_data(folder: Path) -> Path:
    """TREC-shaped classification CSVs and alpaca-shaped records, tiny, in the layout of ../shared/data."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = ["good", "bad", "meh"]
    rows = ["text,label"] + [f"{labels[i % 3]} thing number {i},{labels[i % 3]}" for i in range(60)]
    (folder / "trec_train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "trec_test.csv").write_text("\n".join(rows[:13]) + "\n", encoding="utf-8")
    records = [{"instruction": f"Say {w}.", "input": "", "output": f"{w}!"} for w in
               ["hi", "yes", "no", "ok", "bye", "go"] * 7]
    (folder / "alpaca_en_demo.json").write_text(json.dumps(records), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def tiny_llama_chatml(model_root):
    from tiny_llama import CHATML, make_tiny_llama
    return make_tiny_llama(model_root / "bench-llama", chat_template=CHATML)


def test_harness_runs_end_to_end_on_tiny_models(tmp_path, tiny_bert, tiny_llama_chatml, capsys):
    data = _write_data(tmp_path / "data")
    out = tmp_path / "results"
    rc = bench_train.main(["--cases", "classify-24-freeze1,generate-lora", "--epochs", "2", "--inprocess",
                           "--data-dir", str(data), "--classify-model", str(tiny_bert),
                           "--generate-model", str(tiny_llama_chatml), "--out", str(out), "--peak-size", "128"])
    assert rc == 0
    saved = list(out.glob("*.json"))
    assert len(saved) == 1
    results = json.loads(saved[0].read_text())
    runs = {(r["case"], r["trainer"]): r for r in results["runs"]}
    assert set(runs) == {("classify-24-freeze1", t) for t in ("hf-tutorial", "hf-tuned", "studio")} | \
        {("generate-lora", t) for t in ("hf-plain", "studio")}
    for key, r in runs.items():
        assert r["ok"], (key, r.get("error"), r.get("traceback"))
        assert len(r["epoch_s"]) == 2 and r["samples_per_s"] > 0 and r["gflops"] > 0, key
        assert r["local_peak"]["before"] > 0 and r["local_peak"]["after"] > 0, key
    assert runs[("classify-24-freeze1", "studio")]["accuracy"] is not None
    assert runs[("generate-lora", "studio")]["eval_loss"] > 0
    printed = capsys.readouterr().out
    # The studio's rows name their number format where it is not fp32: "studio (bf16)".
    assert "| classify-24-freeze1 | studio " in printed and "| generate-lora | hf-plain |" in printed


def test_worker_subprocess_isolates_one_trainer(tmp_path, tiny_bert):
    """The default path: one trainer in a fresh `python -m benchmarks.worker` with its own memory."""
    from benchmarks.cases import write_case_data
    case = parse_case("classify-24-full", epochs=1)
    files = write_case_data(case, _write_data(tmp_path / "data"), tmp_path / "case")
    spec = {"case": case.to_dict(), "trainer": "hf-tuned", "model": str(tiny_bert), "model_folder": str(tiny_bert),
            "train_path": files["train_path"], "test_path": files["test_path"], "work_dir": str(tmp_path), "seed": 42}
    row = bench_train.run_trainer(spec, tmp_path, inprocess=False, timeout=300)
    assert row["ok"], row.get("error")
    assert row["max_rss_mib"] > 50 and row["torch_threads"] >= 1 and len(row["epoch_s"]) == 1


def test_the_peak_measured_in_the_worker_leaves_the_trainers_seed_alone(monkeypatch):
    """The worker's own peak measurement seeds torch; the trainer must still start from its seed."""
    import torch
    from transformers import set_seed
    from benchmarks import studio_run, worker
    monkeypatch.setattr(studio_run, "run", lambda spec, fp32=False: {"draw": torch.rand(3).tolist()})
    row = worker.run_spec({"case": parse_case("classify-24-full").to_dict(), "trainer": "studio", "seed": 42,
                           "peak_size": 64})
    set_seed(42)
    assert row["draw"] == torch.rand(3).tolist()
    assert row["local_peak"]["before"] > 0 and row["local_peak"]["after"] > 0
