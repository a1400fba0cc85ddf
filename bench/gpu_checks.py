"""Small checks for bench/gpu_train.sh, one subcommand each; every one prints what it found
and exits non-zero when the check fails.

    python bench/gpu_checks.py devices                  # the GPU as torch and training see it
    python bench/gpu_checks.py same-weights A.ckpt B.ckpt   # two checkpoints bit for bit
    python bench/gpu_checks.py across-devices RUN --devices cpu cuda --input FOLDER
    python bench/gpu_checks.py run-summary --log train.log --usage usage.csv
    python bench/gpu_checks.py check-args --plan plan.txt   # planned commands' arguments parse
    python bench/gpu_checks.py check-args -- -m stargan_core.cli train --data d --out r
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import statistics
import sys
from pathlib import Path

import torch


def devices(args: argparse.Namespace) -> int:
    """The driver's GPUs as torch sees them, what `--device auto` picks, and whether bf16 is
    native (training's bf16 autocast is on only where it is)."""
    from stargan_core.devices import native_bf16, resolve_device

    print(f"torch {torch.__version__}, built for CUDA {torch.version.cuda}, cuDNN "
          f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}")
    available = torch.cuda.is_available()
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print(f"torch.cuda.is_available(): {available}; {len(names)} GPU(s): {', '.join(names)}")
    auto = resolve_device("auto")
    print(f"--device auto resolves to: {auto}")
    bf16 = native_bf16(auto)
    print(f"bf16 native on {auto}: {bf16}")
    return 0 if available and auto.type == "cuda" and bf16 else 1


def _tensors(state: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested checkpoint state, by its path (G.main.0.weight, g_opt...)."""
    found: dict[str, torch.Tensor] = {}
    if isinstance(state, torch.Tensor):
        found[prefix] = state
    elif isinstance(state, dict):
        for key, value in state.items():
            found |= _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, list | tuple):
        for i, value in enumerate(state):
            found |= _tensors(value, f"{prefix}.{i}")
    return found


def same_weights(args: argparse.Namespace) -> int:
    """Whether two checkpoints hold the same tensors bit for bit: networks, moving average and
    Adam's state (the random generators' states are reported apart)."""
    a, b = (_tensors(torch.load(p, map_location="cpu", weights_only=True))
            for p in (args.a, args.b))
    if set(a) != set(b):
        print(f"different contents: only in A {sorted(set(a) - set(b))[:5]}, only in B "
              f"{sorted(set(b) - set(a))[:5]}")
        return 1
    largest, where, differing = 0.0, "", []
    for key in sorted(a):
        x, y = a[key], b[key]
        if x.shape != y.shape or x.dtype != y.dtype:
            differing.append(key)
            continue
        if torch.equal(x, y):
            continue
        differing.append(key)
        if x.is_floating_point():
            gap = (x.double() - y.double()).abs().max().item()
            if gap > largest:
                largest, where = gap, key
    weights = [k for k in differing if not k.startswith("rng")]
    print(f"{len(a)} tensors compared; {len(weights)} of the weights and optimiser state differ"
          f"{f', the most {largest:.3g} in {where}' if weights else ''}; largest difference "
          f"{largest:.3g}" + ("; the random generators' states differ" if
                              len(weights) < len(differing) else ""))
    return 1 if differing else 0


def across_devices(args: argparse.Namespace) -> int:
    """One checkpoint translating the same images on each device: the largest difference in
    pixel levels (0-255) against the first device."""
    from stargan_core.checkpoint import load_models, resolve_checkpoint
    from stargan_core.editing import source_labels, translate_batch
    from stargan_core.io.images import read_rgb
    from stargan_core.targets import single_targets

    path = resolve_checkpoint(args.checkpoint)
    files = sorted(Path(args.input).glob("*.jpg"))[:args.images] if args.input else []
    outputs, labels = {}, {}
    for device in args.devices:
        g, d, spec, config, preprocessing = load_models(path, device)
        if files:
            x = torch.stack([preprocessing(read_rgb(str(f))) for f in files])
        else:  # a fixed batch of noise when no images are given
            x = torch.rand(args.images, 3, config.image_size, config.image_size,
                           generator=torch.Generator().manual_seed(0)) * 2 - 1
        x = x.to(device)
        with torch.inference_mode():
            c_org = source_labels(d, spec, x)
            out = translate_batch(g, spec, x, c_org, single_targets(spec))
        outputs[device], labels[device] = out.float().cpu(), c_org.cpu()
    first, *others = args.devices
    worst = 0.0
    for device in others:
        levels = (outputs[device] - outputs[first]).abs() * 127.5  # [-1, 1] in 0-255 levels
        same = torch.equal(labels[device], labels[first])
        print(f"{path.name} on {device} against {first}: {outputs[first].shape[1]} images x "
              f"{outputs[first].shape[0]} targets; largest pixel difference "
              f"{levels.max().item():.2f} of 255, mean {levels.mean().item():.4f}; source "
              f"domains read by D {'agree' if same else 'DISAGREE'}")
        worst = max(worst, levels.max().item() if same else float("inf"))
    return 0 if worst <= args.tolerance else 1


def run_summary(args: argparse.Namespace) -> int:
    """GPU utilisation sampled by nvidia-smi during a `stargan train` run, and the step rate
    the run printed."""
    text = Path(args.log).read_text(errors="replace").replace("\r", "\n")
    rates = re.findall(r"(\d+(?:\.\d+)?)(step/s|s/step)", text)
    images = re.findall(r"img/s=(\d+(?:\.\d+)?)", text)
    if rates:
        value, unit = rates[-1]
        per_second = float(value) if unit == "step/s" else 1 / float(value)
        print(f"step rate at the end: {per_second:.2f} steps/s (tqdm's recent rate)"
              + (f"; {images[-1]} images/s since the loop began (training's own)"
                 if images else ""))
    else:
        print("step rate: not found in the run's output")
    samples = []
    for line in Path(args.usage).read_text().splitlines():
        with contextlib.suppress(ValueError):
            utilisation, memory = (float(v) for v in line.split(",")[:2])
            samples.append((utilisation, memory))
    if not samples:
        print("GPU utilisation: no samples")
        return 1
    busy = [i for i, (u, _) in enumerate(samples) if u > 0]
    loop = samples[busy[0]:busy[-1] + 1] if busy else samples
    for what, chosen in ((f"all {len(samples)} samples (start-up and data loading included)",
                          samples),
                         (f"the {len(loop)} from the first busy sample to the last (the loop)",
                          loop)):
        used = [u for u, _ in chosen]
        print(f"GPU utilisation over {what}: mean {statistics.mean(used):.0f}%, median "
              f"{statistics.median(used):.0f}%")
    print(f"GPU memory used at most: {max(m for _, m in samples):.0f} MiB")
    return 0 if rates else 1


def _parser_of(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The argparse parser of a planned python command (`-m MODULE ...` or `SCRIPT.py ...`)
    and the arguments it gets: the module's or script's own build_parser()."""
    if len(argv) >= 2 and argv[0] == "-m":
        module, rest = importlib.import_module(argv[1]), argv[2:]
    elif argv and argv[0].endswith(".py"):
        path = Path(argv[0])
        sys.path.insert(0, str(path.parent))  # as when it runs: its folder first on the path
        spec = importlib.util.spec_from_file_location(f"planned_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rest = argv[1:]
    else:
        raise ValueError("not a command this checker knows (-m MODULE or SCRIPT.py)")
    if not hasattr(module, "build_parser"):
        raise ValueError(f"{argv[0] if argv[0] != '-m' else argv[1]} has no build_parser()")
    parser = module.build_parser()
    if argv[0] != "-m":
        parser.prog = Path(argv[0]).name  # its errors name it (not this checker)
    return parser, rest


def check_command(argv: list[str]) -> str | None:
    """None when `argv` (a python command line without the interpreter) parses as its target
    would parse it, else what is wrong. `stargan train`'s --set options and preset are also
    made into the training config, as the command does first."""
    errors = io.StringIO()
    try:
        parser, rest = _parser_of(argv)
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            parsed = parser.parse_args(rest)
        if getattr(parsed, "command", None) == "train" and argv[1:2] == ["stargan_core.cli"]:
            from stargan_core.cli import train_config

            train_config(parsed)
    except SystemExit as stop:  # argparse's way of refusing
        if stop.code:
            return errors.getvalue().strip().splitlines()[-1] if errors.getvalue() else \
                f"exit {stop.code}"
    except Exception as error:  # noqa: BLE001 - any failure to build is the finding
        return f"{type(error).__name__}: {error}"
    return None


def check_args(args: argparse.Namespace) -> int:
    """Every planned command's arguments parse (nothing is run)."""
    commands = [shlex.split(line) for line in Path(args.plan).read_text().splitlines()
                if line.strip()] if args.plan else [args.command]
    failed = 0
    for argv in commands:
        problem = check_command(argv)
        failed += problem is not None
        print(f"  {'ok  ' if problem is None else 'FAIL'} {shlex.join(argv)[:110]}"
              + (f"\n       {problem}" if problem else ""))
    print(f"{len(commands) - failed} of {len(commands)} planned python commands parse")
    return 1 if failed or not commands else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="check", required=True)
    p = sub.add_parser("devices", help="GPU, torch's CUDA, --device auto, native bf16")
    p.set_defaults(func=devices)
    p = sub.add_parser("same-weights", help="two checkpoints' tensors bit for bit")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(func=same_weights)
    p = sub.add_parser("across-devices", help="one checkpoint translating on several devices")
    p.add_argument("checkpoint", help="a .ckpt file or a run folder")
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    p.add_argument("--input", help="a folder of .jpg images (default: a fixed batch of noise)")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--tolerance", type=float, default=8.0,
                   help="largest pixel difference (0-255) that passes (default: 8)")
    p.set_defaults(func=across_devices)
    p = sub.add_parser("run-summary", help="GPU utilisation and step rate of a training run")
    p.add_argument("--log", required=True, help="the run's output (stdout and stderr)")
    p.add_argument("--usage", required=True, help="nvidia-smi's samples: utilisation, memory")
    p.set_defaults(func=run_summary)
    p = sub.add_parser("check-args", help="planned python commands' arguments parse")
    p.add_argument("--plan", help="a file of commands, one a line, shell-quoted, without the "
                   "interpreter")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="or one command, after --")
    p.set_defaults(func=check_args)
    return parser


def main() -> int:
    args = build_parser().parse_args()
    if getattr(args, "command", None) and args.command[0] == "--":
        args.command = args.command[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
