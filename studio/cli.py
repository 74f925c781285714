"""`studio` on the command line: train headless, predict, evaluate, list and resume runs.

    studio train CONFIG.yaml            run a job with a terminal progress bar
    studio predict RUN --text "..."     base and tuned prediction as JSON
    studio eval RUN --data FILE         base vs tuned on a labelled file, as JSON
    studio generate RUN --prompt "..."  the tuned answer (--base: the base answer too; --json)
    studio runs                         list runs (interrupted ones included)
    studio resume RUN                   continue an interrupted run from its last checkpoint
    studio config                       print the default config YAML (a starting point)

RUN is a run id (a folder name under WORKSPACE/runs) or a path to a run folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from studio.errors import StudioError


def _store(args):
    from studio.training.runs import RunStore
    return RunStore(Path(args.workspace) / "runs")


def _run(args):
    from studio.training.runs import Run
    path = Path(args.run)
    if (path / "status.json").exists():
        return Run(path.resolve())
    return _store(args).get(args.run)


def _follow(job) -> int:
    """Draw a progress bar from the job's snapshots until it ends; return the exit code."""
    from tqdm import tqdm
    from studio.training.estimate import format_duration
    bar = None
    last_version = -1
    estimate_shown = False
    while True:
        snap = job.snapshot()
        if snap.version != last_version:
            last_version = snap.version
            # The estimate's message is replaced within a moment, so print it from its own field.
            if snap.estimate_seconds is not None and not estimate_shown:
                estimate_shown = True
                print(f"Expected duration: about {format_duration(snap.estimate_seconds)}", file=sys.stderr)
            if snap.max_steps and bar is None:
                # Start the bar at the step already reached, so its rate counts only steps it saw
                # happen (from 0 it reads thousands of steps/s for the steps done before it existed).
                bar = tqdm(total=snap.max_steps, initial=snap.step, unit="step", dynamic_ncols=True,
                           file=sys.stderr)
            if bar is not None:
                losses = [r for r in snap.records if r.get("loss") is not None]
                evals = [r for r in snap.records if r.get("eval_loss") is not None]
                post = {}
                if losses:
                    post["loss"] = f"{losses[-1]['loss']:.4f}"
                if evals:
                    post["eval_loss"] = f"{evals[-1]['eval_loss']:.4f}"
                    for key in ("eval_accuracy",):
                        if key in evals[-1]:
                            post["acc"] = f"{evals[-1][key]:.3f}"
                bar.set_postfix(post, refresh=False)
                if snap.step > bar.n:
                    bar.update(snap.step - bar.n)   # redraws the bar
                else:
                    bar.refresh()
            elif snap.message and not snap.message.startswith("Expected duration"):
                print(snap.message, file=sys.stderr)
        if snap.done:
            break
        time.sleep(0.5)
    if bar is not None:
        bar.close()
    # "completed" is published before the thread frees the model; exiting while it still runs
    # torch code aborts the interpreter ("terminate called without an active exception").
    job.wait()
    if job.thread is not None:
        job.thread.join(60)
    print(f"{snap.state}: {snap.message}" + (f" {snap.error}" if snap.error and snap.error != snap.message else ""),
          file=sys.stderr)
    print(f"run folder: {job.run.dir}")
    if job.final_metrics:
        print(json.dumps(job.final_metrics, indent=2))
    return 0 if snap.state == "completed" else 1


def cmd_train(args) -> int:
    from studio.config import RunConfig
    from studio.training.manager import JobManager
    config = RunConfig.load(args.config)
    manager = JobManager(_store(args))
    job = manager.submit(config, owner=None)
    try:
        return _follow(job)
    except KeyboardInterrupt:
        print("\nStopping after the current step (Ctrl-C again to abort)…", file=sys.stderr)
        job.stop()
        return _follow(job)


def cmd_resume(args) -> int:
    from studio.training.manager import JobManager
    run = _run(args)
    job = JobManager(_store(args)).resume(run.id)
    return _follow(job)


def cmd_predict(args) -> int:
    from studio.compare import load_pair
    pair = load_pair(_run(args))
    print(json.dumps(pair.predict_one(args.text), indent=2))
    return 0


def cmd_eval(args) -> int:
    from studio.compare import load_pair
    from studio.data import detect_columns, read_table, unify_labels
    run = _run(args)
    if run.config().task == "generate":   # base vs tuned answers next to the file's reference answers
        from studio.generation import batch_compare
        print(json.dumps(batch_compare(run, data_path=args.data).to_dict(), indent=2, default=float,
                         ensure_ascii=False))
        return 0
    pair = load_pair(run)
    frame = read_table(args.data)
    cols = detect_columns(frame, "classify", text=args.text_column, label=args.label_column)
    # The same label normalisation training applied ("1.0" -> "1"), so labels match the model's.
    gold = unify_labels(frame[cols.label].astype(str).str.strip(), [])
    result = pair.compare_dataset(frame[cols.text].astype(str).tolist(), gold.tolist())
    out = result.to_dict()
    if not args.all_disagreements:
        out["disagreements"] = out["disagreements"][:20]
    print(json.dumps(out, indent=2, default=float))
    return 0


def cmd_generate(args) -> int:
    """The tuned model's answer to one prompt (and the base model's, with --base)."""
    from studio.config import GenerateSpec
    from studio.generation import load_pair
    pair = load_pair(_run(args))
    base = pair.config.generate
    settings = GenerateSpec(max_new_tokens=args.max_new_tokens or base.max_new_tokens,
                          temperature=base.temperature if args.temperature is None else args.temperature,
                          top_p=base.top_p if args.top_p is None else args.top_p)
    started = time.time()
    out = {"prompt": args.prompt, "tuned": pair.answer(args.prompt, "tuned", settings, system=args.system)}
    if args.base:
        out["base"] = pair.answer(args.prompt, "base", settings, system=args.system)
    out["seconds"] = round(time.time() - started, 2)
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    elif args.base:
        print(f"base:  {out['base']}\ntuned: {out['tuned']}")
    else:
        print(out["tuned"])
    return 0


def cmd_runs(args) -> int:
    for run in _store(args).list():
        status = run.status()
        final = run.final_metrics() or {}
        acc = final.get("eval", {}).get("accuracy")
        print(f"{run.id}  {status.get('state', '?'):<11}  {status.get('task', '')}  {status.get('model', '')}"
              + (f"  accuracy={acc:.3f}" if acc is not None else ""))
    return 0


def cmd_config(args) -> int:
    from studio.config import RunConfig
    print(RunConfig().to_yaml(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio", description="Fine-Tune Studio from the command line.")
    parser.add_argument("--workspace", default=os.environ.get("STUDIO_WORKSPACE", "workspace"),
                        help="folder for runs and uploads (default: ./workspace or $STUDIO_WORKSPACE)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train from a config YAML")
    p.add_argument("config")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("resume", help="resume an interrupted run")
    p.add_argument("run")
    p.set_defaults(fn=cmd_resume)
    p = sub.add_parser("predict", help="base and tuned prediction for one text")
    p.add_argument("run")
    p.add_argument("--text", required=True)
    p.set_defaults(fn=cmd_predict)
    p = sub.add_parser("eval", help="base vs tuned on a labelled file")
    p.add_argument("run")
    p.add_argument("--data", required=True)
    p.add_argument("--text-column")
    p.add_argument("--label-column")
    p.add_argument("--all-disagreements", action="store_true")
    p.set_defaults(fn=cmd_eval)
    p = sub.add_parser("generate", help="the tuned model's answer to a prompt (generation runs)")
    p.add_argument("run")
    p.add_argument("--prompt", required=True)
    p.add_argument("--base", action="store_true", help="also print the base model's answer")
    p.add_argument("--json", action="store_true", help="print JSON instead of plain text")
    p.add_argument("--system", help="a system message before the prompt")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--temperature", type=float, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float)
    p.set_defaults(fn=cmd_generate)
    p = sub.add_parser("runs", help="list runs")
    p.set_defaults(fn=cmd_runs)
    p = sub.add_parser("config", help="print the default config")
    p.set_defaults(fn=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ["STUDIO_WORKSPACE"] = str(Path(args.workspace).resolve())
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from studio.training.trainer import quiet_library_progress_bars
    quiet_library_progress_bars()
    try:
        return args.fn(args)
    except StudioError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
