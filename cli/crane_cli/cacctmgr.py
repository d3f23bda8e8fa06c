"""cacctmgr: accounts, users and QoS (``cacctmgr <verb> <entity> [names] [Key=Val...] [where ...] [set ...]``).

The grammar is in :mod:`crane_cli.cacctmgr_parse` (words, values) and :mod:`crane_cli.cacctmgr_plan` (keys,
requests), the output in :mod:`crane_cli.cacctmgr_show`.
Global flags go anywhere: ``-J/--json`` (print the controller's replies as protojson),
``-f/--force``, ``-C/--config``, ``-h/--help``, ``-v/--version``. Exit codes: 0 done, 2 bad
syntax (one line, before anything is sent), 3 the controller cannot be reached, 4 it refused
(one line per error: ``<entity>: <reason>``), 5 an unknown ``format=`` column.

Upstream forms this cluster does not have are refused with exit code 2: ``show event`` (no
node event history is kept), ``wckey`` (jobs carry no wckey), ``resource`` (licenses are not
modelled), ``reset`` (user certificates are not modelled), ``-P/--partition-limit`` and the
TRES limits (per-partition and TRES limits are not modelled).
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from crane_cli.cliparse import Argument, Command, Option, common_options, parse, run
from crane_cli.errors import EXIT_BACKEND, EXIT_OK

GRAMMAR = """\

commands:
  add account NAME [Description=] [Parent=] [DefaultQos=] [Partition=a,b]
      [QosList=a,b]
  add user NAME Account=ACCOUNT [Coordinator=yes] [Level=none|operator|admin]
      [Partition=a,b]
  add qos NAME [Description=] [Priority=] [MaxJobsPerUser=] [MaxJobsPerAccount=]
      [MaxJobs=] [MaxSubmitJobsPerUser=] [MaxSubmitJobsPerAccount=]
      [MaxSubmitJobs=] [MaxCpusPerUser=] [MaxWall=] [MaxTimeLimitPerJob=]
      [Flags=DenyOnLimit|None] [Preempt=a,b] [PreemptMode=OFF|CANCEL|...]
  delete account|qos NAME[,NAME...]
  delete user NAME[,NAME...] [Account=ACCOUNT]
  block|unblock account NAME[,NAME...]
  block|unblock user NAME[,NAME...] [Account=ACCOUNT]
  modify account where Name=A set Description= DefaultQos= Parent=
      AllowedPartition= AllowedQos= Coordinator=
  modify user where Name=U [Account=A] [Partition=P] set AllowedPartition=
      AllowedQos= DefaultQos= AdminLevel= DefaultAccount=
  modify qos where Name=Q set Description= Priority= Max...= Flags= Preempt=
      PreemptMode=
  show account|user|qos [NAME[,NAME...]] [where Name= Account=] [format=A,B]
  show transaction [where Actor= Target= Action= StartTime= EndTime=]

Verbs, entities and keys are case-insensitive; 'update' is 'modify'. List
fields (AllowedPartition, AllowedQos, Coordinator, Preempt) also take += and
-= after set.
Counts and durations take 'unlimited'; durations are [D-]HH:MM:SS, MM:SS,
minutes or N{s,m,h,d}.
"""


def _print_help(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from crane_cli.helpfmt import render_help

        sys.stdout.write(render_help(ctx) + GRAMMAR)
        ctx.exit(0)


def build_command() -> Command:
    """cacctmgr's flags (anywhere among the words) and the words of the sentence."""
    cmd = Command("cacctmgr", help="Manage accounts, users and QoS.", params=[
        Argument("words", nargs=-1, required=False, metavar="WORDS",
                 help="verb, entity, names and Key=Value words (see the commands below)"),
        Option("-J", "--json", flag=True, default=False, help="print the controller's replies as JSON", script=()),
        Option("-f", "--force", flag=True, default=False, help="force a change the controller refuses without it",
               script=()),
        Option("-P", "--partition-limit", flag=True, unsupported=True),
        *common_options(json_flag=False),
    ])
    cmd.params[0] = Option("-h", "--help", flag=True, expose_value=False, is_eager=True, callback=_print_help,
                           help="show this help message and exit", script=())
    return cmd


def build(pb: object, call: object) -> object:
    """The request message of ``call``; ``force`` only where the message has it (it is newer on deletes)."""
    cls = getattr(pb, call.request_type)  # type: ignore[attr-defined]
    kwargs = dict(call.kwargs)  # type: ignore[attr-defined]
    if "force" in kwargs and "force" not in cls.DESCRIPTOR.fields_by_name:
        del kwargs["force"]
    return cls(**kwargs)


def command(argv: list[str]) -> int:
    """cacctmgr's body: returns the exit code, raises CliError on failure."""
    args = parse(build_command(), argv)
    from crane_cli import cacctmgr_plan
    from crane_cli.cacctmgr_show import columns, report, show

    words, calls, keyed = cacctmgr_plan.plan(list(args.words), force=args.force)
    cols = columns(words.entity, cacctmgr_plan.format_columns(keyed)) if words.verb == "show" else []
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    from crane_cli import rpc

    pb = rpc.pb
    code = EXIT_OK
    with rpc.Controller(conf) as ctld:
        for call in calls:
            reply = ctld.call(call.method, build(pb, call))
            if args.json:
                from crane_cli.protojson import to_json

                print(to_json(reply))
                result = EXIT_OK if reply.ok else EXIT_BACKEND
            elif call.verb == "show":
                result = show(call, reply, cols)
            else:
                result = report(call, reply)
            code = code or result
    return code


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="cacctmgr")
