"""Run ONE trainer on ONE case in a fresh process: `python -m benchmarks.worker SPEC.json OUT.json`.

A fresh process per trainer keeps them apart: its peak memory (ru_maxrss, the resident-set high
water mark) is its own, no thread pool or allocator cache is inherited, and a crash costs one row.
The spec (JSON) holds: case (Case.to_dict()), trainer ("hf-tutorial" | "hf-tuned" | "hf-plain" |
"studio" | "studio-fp32"), model (catalog name or folder, for the studio), model_folder (the resolved folder, for
the baselines), train_path, test_path, work_dir, seed, and peak_size (optional: the matmul size of
the fp32 peak measured in this process just before and just after the trainer runs, so each row's
share of the peak is of the machine as it was while that row trained). The output JSON holds the
measurements, or
{"ok": false, "error": ...}. `run_spec` does the same in the calling process (used by --inprocess).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
import traceback

from benchmarks.cases import STUDIO_TRAINERS

# Offline and quiet, before transformers is imported anywhere.
for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _import_stack() -> float:
    """Import torch/transformers/datasets up front, so no trainer is charged for import time."""
    start = time.time()
    import datasets  # noqa: F401
    import torch  # noqa: F401
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    return round(time.time() - start, 3)


def _peak(size: int | None) -> float | None:
    """This process's fp32 matmul peak in GFLOP/s (about 1 s at 2048²), or None without a size.
    Measured in a thread of its own that then ends: measured in the main thread, the matmul's
    OpenMP team would stay and halve the speed of the studio's trainer thread (fresh_thread.py)."""
    if not size:
        return None
    from benchmarks.peak import measure_peak
    from studio.fresh_thread import in_fresh_thread
    return in_fresh_thread(measure_peak, size)["gflops"]


def run_spec(spec: dict) -> dict:
    """Run the spec's trainer here; return its measurements plus process facts (never raises)."""
    import_s = _import_stack()
    import torch
    from transformers import set_seed

    peak_size = spec.get("peak_size")
    peak_before = _peak(peak_size)   # first: it seeds torch itself, and the trainer's seed comes next
    set_seed(spec["seed"])
    load_before = os.getloadavg()
    trainer, task = spec["trainer"], spec["case"]["task"]
    try:
        if trainer in STUDIO_TRAINERS:
            from benchmarks.studio_run import run
            result = run(spec, fp32=trainer == "studio-fp32")
        elif task == "classify":
            from benchmarks.baseline_hf import run_classify
            result = run_classify(spec)
        else:
            from benchmarks.baseline_hf import run_generate
            result = run_generate(spec)
        result["ok"] = True
    except Exception as exc:  # one failed row must not lose the others
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()[-4000:]}
    if peak_before is not None:
        result["local_peak"] = {"before": peak_before, "after": _peak(peak_size)}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    rss_mib = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    result.update(case=spec["case"]["name"], trainer=trainer, import_s=import_s,
                  max_rss_mib=round(rss_mib, 1), cpu_s=round(usage.ru_utime + usage.ru_stime, 2),
                  torch_threads=torch.get_num_threads(), python=platform.python_version(),
                  loadavg_before=[round(x, 2) for x in load_before],
                  loadavg_after=[round(x, 2) for x in os.getloadavg()])
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.worker SPEC.json OUT.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as fh:
        spec = json.load(fh)
    result = run_spec(spec)
    with open(argv[1], "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
