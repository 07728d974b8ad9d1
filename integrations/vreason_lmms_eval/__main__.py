"""``python -m vreason_lmms_eval``: write the offline synthetic task or a tiny checkpoint.

python -m vreason_lmms_eval make-task /tmp/vsynth --n 16
python -m vreason_lmms_eval make-checkpoint /tmp/tiny-qwen --family qwen2_5_vl   # or qwen3_vl,
llava_onevision"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vreason_lmms_eval", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    task = sub.add_parser("make-task", help="write the vreason_synth task folder (clips, data, YAML)")
    task.add_argument("out_dir")
    task.add_argument("--n", type=int, default=16, help="number of clips / questions")
    task.add_argument("--seed", type=int, default=0)
    task.add_argument("--frames", type=int, default=8)
    task.add_argument("--size", type=int, default=64, help="frame side in pixels")
    ckpt = sub.add_parser(
        "make-checkpoint", help="write a tiny random-weight checkpoint usable as pretrained=DIR"
    )
    ckpt.add_argument("out_dir")
    ckpt.add_argument("--family", choices=["qwen2_5_vl", "qwen3_vl", "llava_onevision"], default="qwen2_5_vl")
    ckpt.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "make-task":
        from .synthetic_task import make_task

        path = make_task(args.out_dir, n=args.n, seed=args.seed, frames=args.frames, size=args.size)
        print(f"wrote {path}; run with: --include_path {path} --tasks vreason_synth")
    else:
        from vreason_hooks.apps.tiny_checkpoints import write_tiny_checkpoint

        print(f"wrote {write_tiny_checkpoint(args.family, args.out_dir, seed=args.seed)}")


if __name__ == "__main__":
    main()
