"""Fine-Tune Studio: `python app.py` and open http://127.0.0.1:7860.

Importing this module builds the interface (`demo`) without importing torch or transformers:
they load in a background thread once the server answers, or when a handler first needs them.
Hugging Face Spaces (sdk: gradio, app_file: app.py) run this file as a script; there the
studio listens where Spaces asks (GRADIO_SERVER_NAME/PORT) and starts in hosted mode.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="app.py", description="Fine-Tune Studio: fine-tune small pretrained models in the browser, offline.")
    parser.add_argument("--host", default=env("STUDIO_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 to reach it from other machines)")
    parser.add_argument("--port", type=int, default=int(env("STUDIO_PORT") or env("GRADIO_SERVER_PORT") or 7860),
                        help="port to listen on (default 7860)")
    parser.add_argument("--share", action="store_true",
                        help="also open a temporary public *.gradio.live link (needs a network)")
    parser.add_argument("--workspace", default=env("STUDIO_WORKSPACE"),
                        help="folder for runs, uploads and local models (default ./workspace)")
    parser.add_argument("--hosted", action="store_true", default=bool(env("STUDIO_HOSTED") or env("SPACE_ID")),
                        help="hosted mode: each browser sees only its own runs and uploads, and data "
                             "comes only from uploads and the bundled samples (default on a HF Space)")
    parser.add_argument("--max-concurrent", type=int, default=1, metavar="N",
                        help="trainings that may run at once; the rest wait in line (default 1)")
    parser.add_argument("--quiet", action="store_true", help="print less at start-up")
    args = parser.parse_args(argv)
    if args.max_concurrent < 1:
        parser.error("--max-concurrent must be at least 1")
    return args


# Run as a script, the flags are read first, so `--help` answers without importing gradio.
ARGS = parse_args() if __name__ == "__main__" else None

from studio.ui.layout import build_app, configure, launch  # noqa: E402

demo = build_app()


def main(args: argparse.Namespace | None = None) -> None:
    args = args or parse_args()
    configure(demo, workspace=args.workspace, hosted=args.hosted, max_concurrent=args.max_concurrent)
    launch(demo, host=args.host, port=args.port, share=args.share, quiet=args.quiet)


if __name__ == "__main__":
    main(ARGS)
