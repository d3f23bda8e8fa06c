"""crane: the admin/developer multi-command.

Built in::

    crane version                      versions of crane-cli, crane-common and (if reachable) cranectld
    crane whoami                       who the controller thinks you are
    crane token issue --user NAME ...  mint a token with the cluster key
    crane token show                   decode the current token (no verification)

Delegated (imported only when used; the rest of the command line is passed on)::

    crane demo ...         crane_tools.demo.main(argv)
    crane bench e2e ...    crane_tools.benche2e.main(argv)
    crane bench sched ...  crane_tools.schedbench.main(argv)
    crane sim ...          crane_tools.sim.main(argv)

Global option ``-C/--config PATH`` comes before the subcommand; for delegated
subcommands it is passed on as ``$CRANE_CONFIG``.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from crane_cli import __version__
from crane_cli.cliparse import Parser, disable_fast_exit, run
from crane_cli.errors import EXIT_GENERIC, EXIT_OK, EXIT_SYSTEM, CliError, arg_error

COMMAND_GROUP = "crane.commands"
BUILTINS = ("version", "whoami", "token")
LEVELS = ("none", "operator", "admin", "root")


def split_global(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take ``-C/--config`` (and ``--config=``) off the front of ``argv``; return (config, rest)."""
    config = None
    rest = list(argv)
    while rest:
        head = rest[0]
        if head in ("-C", "--config"):
            if len(rest) < 2:
                raise arg_error(f"crane: argument {head}: expected one argument")
            config, rest = rest[1], rest[2:]
        elif head.startswith("--config="):
            config, rest = head.split("=", 1)[1], rest[1:]
        elif head.startswith("-C") and len(head) > 2:
            config, rest = head[2:], rest[1:]
        else:
            break
    return config, rest


def installed_commands() -> dict:
    """``{verb: entry point}`` of the ``crane.commands`` group (what installed packages add)."""
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group=COMMAND_GROUP):
        if ep.name not in BUILTINS:
            found.setdefault(ep.name, ep)
    return found


def find_delegate(rest: list[str]) -> tuple[object, list[str]] | None:
    """``(entry point, remaining argv)`` when ``rest`` starts with an installed verb."""
    if not rest or rest[0].startswith("-") or rest[0] in BUILTINS:
        return None
    ep = installed_commands().get(rest[0])
    return None if ep is None else (ep, rest[1:])


def delegate(ep, argv: list[str], config: str | None) -> int:  # noqa: ANN001 - an EntryPoint
    """Load the verb's entry point and return ``main(argv)``; a broken package is a one-line error."""
    disable_fast_exit()
    if config:
        os.environ["CRANE_CONFIG"] = os.path.abspath(config)
    try:
        main = ep.load()
    except Exception as exc:  # the package is broken or half-installed
        raise CliError(f"crane: the {ep.name!r} command ({ep.value}) failed to load: {type(exc).__name__}: {exc}",
                       EXIT_GENERIC) from None
    if not callable(main):
        raise CliError(f"crane: the {ep.name!r} command ({ep.value}) is not callable", EXIT_GENERIC)
    code = main(argv)
    return int(code or 0)


def build_parser(with_installed: bool = True) -> Parser:
    """The parser of the built-in subcommands (listing the installed verbs costs ~10 ms: only for help/errors)."""
    verbs = sorted(installed_commands()) if with_installed else []
    p = Parser(prog="crane", description="cranesched admin and developer commands.",
               epilog="Installed commands (crane.commands): " + (", ".join(verbs) or "none"))
    p.add_argument("-C", "--config", metavar="PATH", help="cluster config file")
    p.add_argument("-v", "--version", action="version", version=f"%(prog)s (crane-cli) {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    v = sub.add_parser("version", help="versions of the CLI, the kernel and the controller")
    v.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the controller (default 2)")
    w = sub.add_parser("whoami", help="the identity the controller sees")
    w.add_argument("--json", action="store_true", help="print the controller's reply as JSON")
    tok = sub.add_parser("token", help="issue or show identity tokens")
    tsub = tok.add_subparsers(dest="token_cmd", metavar="ACTION", parser_class=Parser)
    tsub.required = True
    issue = tsub.add_parser("issue", help="mint a token with the cluster key (needs read access to it)")
    issue.add_argument("--user", required=True, help="user name the token is for")
    issue.add_argument("--uid", type=int, help="numeric uid (default: looked up from --user)")
    issue.add_argument("--level", choices=LEVELS, default="none", help="admin level (default none)")
    issue.add_argument("--ttl", type=int, default=0, help="lifetime in seconds (default 0: no expiry)")
    issue.add_argument("--key-file", help="cluster key file (default: Auth.KeyFile of the config)")
    save = issue.add_mutually_exclusive_group()
    save.add_argument("--save", action="store_true", help="also write it to your token file")
    save.add_argument("--save-to", metavar="PATH", help="also write it to PATH (e.g. another user's token file)")
    show = tsub.add_parser("show", help="decode the current token without verifying it")
    show.add_argument("--json", action="store_true", help="print the payload as JSON")
    # Listed for --help; dispatched before parsing.
    for verb, ep in sorted(installed_commands().items() if with_installed else ()):
        sub.add_parser(verb, help=f"(from {ep.value.split(':')[0].split('.')[0]})", add_help=False)
    return p


# -- version / whoami ------------------------------------------------------------------

def _common_version() -> str:
    try:
        import crane_common

        return getattr(crane_common, "__version__", "unknown")
    except ImportError:
        return "not installed"


def cmd_version(args) -> int:  # noqa: ANN001
    """Print the versions; ask the controller too, but never fail because it is away."""
    print(f"crane-cli {__version__}")
    print(f"crane-common {_common_version()}")
    from crane_cli import clientconf

    try:
        conf = clientconf.load(args.config)
    except CliError as exc:
        print(f"cranectld: unknown ({exc.message})")
        return EXIT_OK
    from crane_cli import rpc

    try:
        with rpc.Controller(conf, timeout=args.timeout) as ctld:
            info = ctld.call("QueryServerInfo", rpc.pb.ServerInfoRequest())
    except CliError as exc:
        print(f"cranectld: unreachable at {conf.target} ({exc.message})")
        return EXIT_OK
    cluster = f", cluster {info.cluster_name}" if info.cluster_name else ""
    sched = f", scheduler {info.scheduler}" if info.scheduler else ""
    print(f"cranectld {info.version or 'unknown'} at {conf.target}{cluster}{sched}")
    return EXIT_OK


def cmd_whoami(args) -> int:  # noqa: ANN001
    """Print the identity the controller derives from our token."""
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    from crane_cli import rpc

    with rpc.Controller(conf) as ctld:
        info = ctld.call("QueryServerInfo", rpc.pb.ServerInfoRequest())
    if args.json:
        from crane_cli.protojson import to_json

        print(to_json(info))
        return EXIT_OK
    print(f"{info.identity or 'anonymous'}{' (admin)' if info.admin else ''}")
    return EXIT_OK


# -- tokens ------------------------------------------------------------------------------

def lookup_uid(user: str) -> int:
    """The uid of ``user`` from the passwd database (CliError when unknown)."""
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise arg_error(f"crane: no such user {user!r}; give --uid") from None


def write_token(path: str, token: str, owner_uid: int | None = None) -> None:
    """Write ``token`` to ``path`` (mode 0600, parent made 0700); chown to ``owner_uid`` when root."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        created = not os.path.isdir(directory)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (token + "\n").encode())
        finally:
            os.close(fd)
        if owner_uid is not None and os.geteuid() == 0 and owner_uid != 0:
            import pwd

            try:
                gid = pwd.getpwuid(owner_uid).pw_gid
            except KeyError:
                gid = -1
            os.chown(tmp, owner_uid, gid)
            if created:
                os.chown(directory, owner_uid, gid)
        os.replace(tmp, path)
    except OSError as exc:
        raise CliError(f"crane: cannot write token to {path}: {exc.strerror or exc}", EXIT_SYSTEM) from None


def cmd_token_issue(args) -> int:  # noqa: ANN001
    """Mint (and optionally save) a token."""
    from crane_common import tokens

    if args.ttl < 0:
        raise arg_error("crane: --ttl must not be negative")
    uid = args.uid if args.uid is not None else lookup_uid(args.user)
    if uid < 0:
        raise arg_error("crane: --uid must not be negative")
    key_file = args.key_file
    if not key_file:
        from crane_cli import clientconf

        key_file = clientconf.load(args.config).key_file
    try:
        key = tokens.read_key(key_file)
    except OSError as exc:
        raise CliError(f"crane: cannot read the cluster key {key_file}: {exc.strerror or exc}", EXIT_SYSTEM) \
            from None
    token = tokens.mint(key, uid, args.user, args.level, ttl=args.ttl)
    if args.save:
        import pwd

        try:
            me = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            me = str(os.getuid())
        if me != args.user:
            raise arg_error(f"crane: --save writes your own token file ({me}); use --save-to PATH for {args.user}")
        path = tokens.default_token_path()
        write_token(path, token)
        print(token)
        sys.stderr.write(f"Token saved to {path}\n")
        return EXIT_OK
    if args.save_to:
        write_token(args.save_to, token, owner_uid=uid)
        print(token)
        sys.stderr.write(f"Token saved to {args.save_to}\n")
        return EXIT_OK
    print(token)
    return EXIT_OK


def decode_token(token: str) -> dict:
    """The payload of a ``v1.<payload>.<sig>`` token, without checking the signature."""
    import base64
    import json

    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != "v1":
        raise ValueError("not a v1 token")
    body = parts[1]
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    if not isinstance(payload, dict):
        raise ValueError("malformed token payload")
    return payload


def cmd_token_show(args) -> int:  # noqa: ANN001
    """Show which token the commands would present, and what it claims."""
    import time

    from crane_common import tokens

    token = os.environ.get(tokens.TOKEN_ENV, "").strip()
    source = f"${tokens.TOKEN_ENV}"
    if not token:
        source = tokens.default_token_path()
        try:
            with open(source) as fh:
                token = fh.read().strip()
        except OSError:
            token = ""
    if not token:
        raise CliError(f"crane: no token: ${tokens.TOKEN_ENV} is unset and {source} does not exist "
                       "(root on the controller host gets one minted from the cluster key)", EXIT_GENERIC)
    try:
        payload = decode_token(token)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(f"crane: the token from {source} cannot be decoded: {exc}", EXIT_GENERIC) from None
    if args.json:
        import json

        print(json.dumps({"source": source, **payload}, indent=2))
        return EXIT_OK

    def when(ts: object) -> str:
        """A payload timestamp in local time (``never`` for 0)."""
        if not ts:
            return "never"
        try:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return str(ts)

    exp = payload.get("exp") or 0
    expired = " (expired)" if exp and isinstance(exp, (int, float)) and exp < time.time() else ""
    print(f"source:  {source}")
    print(f"user:    {payload.get('user')}")
    print(f"uid:     {payload.get('uid')}")
    print(f"level:   {payload.get('lvl', 'none')}")
    print(f"issued:  {when(payload.get('iat'))}")
    print(f"expires: {when(exp)}{expired}")
    return EXIT_OK


def command(argv: list[str]) -> int:
    """crane's body: dispatch delegated subcommands, parse and run the built-in ones."""
    config, rest = split_global(argv)
    found = find_delegate(rest)
    if found is not None:
        return delegate(found[0], found[1], config)
    args = build_parser(with_installed=not (rest and rest[0] in BUILTINS)).parse_args(argv)
    if args.cmd == "version":
        return cmd_version(args)
    if args.cmd == "whoami":
        return cmd_whoami(args)
    if args.cmd == "token":
        return cmd_token_issue(args) if args.token_cmd == "issue" else cmd_token_show(args)
    raise arg_error(f"crane: unknown command {args.cmd!r}")


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="crane")
