"""`acula publish RUN_DIR --out DIR [--bench BENCH_DIR] [--push OWNER/NAME]`: an `acula align` run as a Hugging Face
model folder (model.safetensors, config.json, a README.md model card) that loads back by name (docs/publish.md)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("publish", help="turn an `acula align` run into a hub-ready model folder with a model card, "
                                       "and optionally push it")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a finished `acula align` run")
    p.add_argument("--out", required=True, help="the model folder to write (model.safetensors, config.json, "
                                                "README.md)")
    p.add_argument("--bench", default=None, metavar="DIR",
                   help="an `acula bench` output folder (results.csv) of this model: the card's evaluation table "
                        "and its model-index")
    p.add_argument("--name", default=None, help="the model's name in the card (default: the --push repo, else the "
                                                "run folder's name)")
    p.add_argument("--license", default="apache-2.0",
                   help="licence identifier for the card (default apache-2.0; check the licence of the weights the "
                        "run started from)")
    p.add_argument("--push", default=None, metavar="OWNER/NAME",
                   help="upload the folder to this Hugging Face repo (created if needed); the token comes from "
                        "HF_TOKEN in the environment")
    p.add_argument("--private", action="store_true", help="with --push: create the repo private")
    p.set_defaults(func=cmd_publish)


def cmd_publish(args: argparse.Namespace) -> int:
    from ..align.publish import publish

    publish(args.run_dir, args.out, name=args.name, bench=args.bench, license=args.license, push=args.push,
            private=args.private)
    return 0
