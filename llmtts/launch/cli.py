"""``llmtts launch --mode debug|local|slurm [options] <stage> <stage args...>``

Runs ``llmtts <stage> <stage args...>`` (or ``python -m MODULE ...`` with ``--module``) in one
process, under torchrun, or as a SLURM job. Launch options go before the stage name; everything
from the stage name on is passed through untouched.
"""
from __future__ import annotations

import argparse

from llmtts.cli_paths import input_path, output_dir
from llmtts.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "examples:\n"
        "  llmtts launch --mode debug llm train --from-scratch --config configs/llm/tiny.yaml --input-dir shards/tokens "
        "--save-dir runs/dbg trainer.max_steps=5\n"
        "  llmtts launch --mode local --nproc-per-node 4 llm train --from-scratch --config configs/llm/soprano-80m.yaml "
        "--input-dir shards/tokens --save-dir runs/llm parallel.strategy=ddp\n"
        "  llmtts launch --mode slurm --cluster slurm/example.yaml --nodes 2 --gpus-per-node 8 llm train ...\n"
        "  llmtts launch --mode slurm --cluster slurm/local.yaml --nproc-per-node 2 codec encode ...  # 2 shard-parallel tasks\n"
        "see docs/launch.md")
    parser.add_argument("--mode", choices=["debug", "local", "slurm"], required=True,
                        help="debug: this process, no process group; local: torchrun; slurm: submitit job")
    parser.add_argument("--module", default="llmtts.cli", metavar="MODULE",
                        help="run `python -m MODULE <args>` instead of `llmtts <args>` (e.g. llmtts.train.toy)")
    g = parser.add_argument_group("local and slurm")
    g.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                   help="processes (local) / tasks (slurm) per node; slurm default: gpus_per_node or 1")
    g.add_argument("--nodes", "--nnodes", dest="nodes", type=int, default=None, metavar="N", help="number of nodes")
    g = parser.add_argument_group("local (torchrun) multi-node")
    g.add_argument("--node-rank", type=int, default=0, metavar="R", help="this node's rank (local mode, nnodes > 1)")
    g.add_argument("--master-addr", default="", metavar="HOST", help="host of node rank 0 (local mode, nnodes > 1)")
    g.add_argument("--master-port", type=int, default=29500, metavar="PORT")
    g = parser.add_argument_group("slurm")
    input_path(g, "--cluster", default=None, metavar="YAML", help="cluster profile, e.g. slurm/example.yaml")
    output_dir(g, "--job-dir", adds_only=True, default=None, metavar="DIR",
                   help="root of the per-submission job directories (default: the profile's job_root)")
    g.add_argument("--gpus-per-node", type=int, default=None, metavar="N")
    g.add_argument("--cpus-per-task", type=int, default=None, metavar="N")
    g.add_argument("--mem-gb", type=float, default=None, metavar="GB", help="memory per node")
    g.add_argument("--time-min", type=int, default=None, metavar="MIN", help="time limit in minutes")
    for key in ("partition", "account", "qos", "constraint"):
        g.add_argument(f"--{key}", default=None)
    g.add_argument("--signal-delay-s", type=int, default=None, metavar="S",
                   help="SIGUSR2 this long before the time limit (checkpoint + requeue)")
    g.add_argument("--max-requeues", type=int, default=None, metavar="N")
    g.add_argument("--sbatch", action="append", default=[], metavar="FLAG=VALUE",
                   help="extra sbatch flag, repeatable (e.g. --sbatch exclusive=true --sbatch mail-type=END)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any cluster-profile key, repeatable (e.g. --set env.NCCL_DEBUG=INFO)")
    g.add_argument("--array", type=int, default=0, metavar="N",
                   help="submit N independent array elements (RANK = element index, no process group) "
                        "instead of one N-task job: for shard-parallel preprocessing")
    g.add_argument("--dry-run", action="store_true", help="print the sbatch script and exit")
    g.add_argument("--wait", action="store_true", help="block until the job ends; exit 1 if it failed")
    parser.add_argument("stage_args", nargs=argparse.REMAINDER, metavar="STAGE ...",
                        help="the command to run, e.g. `llm train --save-dir runs/llm`")
    parser.set_defaults(func=run)


def cluster_overrides(args: argparse.Namespace) -> list[str]:
    """Named command-line flags as dotted profile overrides (they win over the YAML)."""
    out = []
    named = {"nodes": args.nodes, "tasks_per_node": args.nproc_per_node, "gpus_per_node": args.gpus_per_node,
             "cpus_per_task": args.cpus_per_task, "mem_gb": args.mem_gb, "time_min": args.time_min,
             "partition": args.partition, "account": args.account, "qos": args.qos,
             "constraint": args.constraint, "signal_delay_s": args.signal_delay_s,
             "max_requeues": args.max_requeues}
    out += [f"{k}={v}" for k, v in named.items() if v is not None]
    for item in args.sbatch:
        if "=" not in item:
            item += "=true"  # a bare flag such as --sbatch exclusive
        out.append("sbatch." + item)
    return out + list(args.set)


def stage_args_parse(argv: list[str]) -> bool:
    """Parse ``llmtts <argv>`` here first, so a missing flag fails now rather than in a queued job.
    False when argparse printed help (nothing to launch)."""
    from llmtts.cli import build_parser

    try:
        build_parser().parse_known_args(argv)
    except SystemExit as exc:
        if not exc.code:
            return False
        raise UserError(f"`llmtts {' '.join(argv[:2])}`: invalid arguments (see above); nothing was launched") from None
    return True


def run(args: argparse.Namespace) -> int:
    argv = list(args.stage_args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv and args.module == "llmtts.cli":
        raise UserError("llmtts launch: missing the command to run, e.g. `llmtts launch --mode debug llm train ...`")
    if args.mode == "debug":
        from llmtts.launch.debug import run_debug

        return run_debug(argv, module=args.module)
    if args.mode == "local":
        from llmtts.launch.local import run_local, torchrun_command

        kw = dict(nproc_per_node=args.nproc_per_node or 1, nnodes=args.nodes or 1, node_rank=args.node_rank,
                  master_addr=args.master_addr, master_port=args.master_port, module=args.module)
        torchrun_command(argv, **kw)  # launch options first: their errors are cheaper to report
        if args.module == "llmtts.cli" and not stage_args_parse(argv):
            return 0  # the stage's --help was shown
        return run_local(argv, **kw)
    from llmtts.launch.cluster import load_cluster
    from llmtts.launch.slurm import submit

    cluster = load_cluster(args.cluster, cluster_overrides(args))
    if args.array < 0:
        raise UserError("--array must be >= 0")
    if args.module == "llmtts.cli" and not stage_args_parse(argv):
        return 0
    return submit(argv, cluster, job_root=args.job_dir, module=args.module, array=args.array,
                  dry_run=args.dry_run, wait=args.wait)
