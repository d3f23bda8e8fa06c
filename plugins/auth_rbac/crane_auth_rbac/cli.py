"""``crane token``: the rbac plugin's verbs (a ``crane.commands`` entry point).

::

    crane token issue --user NAME [--uid N] [--level L] [--ttl S] [--save | --save-to PATH]
    crane token show [--json]                 decode the token the commands would present
    crane token revoke (JTI | USER)...        refuse a token id, or every token of a user issued so far
    crane token rotate-key [--grace S]        a new signing key; the old ones verify S more seconds

``issue``, ``revoke`` and ``rotate-key`` need the cluster keyring (root on the controller
host); ``show`` only decodes. The keyring, the revocation list and the defaults come from the
cluster config: ``Auth.KeyFile``, ``ClusterName`` and ``Plugins.Settings.rbac`` (``TokenTTL``,
``RevocationFile``).
"""

from __future__ import annotations

import os
import re
import sys
import time
from types import SimpleNamespace
from typing import Any

import click
from crane_cli.cliparse import Argument, Command, Group, Option
from crane_cli.errors import EXIT_GENERIC, EXIT_OK, EXIT_SYSTEM, CliError, arg_error

from crane_auth_rbac import auth_paths, jwt_tokens

LEVELS = ("none", "operator", "admin", "root")
_JTI = re.compile(r"^[0-9a-f]{32}$")


def cluster_settings(config: str | None = None) -> dict[str, Any]:
    """The rbac settings cranectld would give the plugin, read from the cluster config.

    ``KeyFile`` (``Auth.KeyFile`` relative to ``CraneBaseDir``, default ``<CraneBaseDir>/cluster.key``),
    ``Cluster`` (``ClusterName``, default ``crane``), then ``Plugins.Settings.rbac`` on top.
    """
    import yaml

    path = config or os.environ.get("CRANE_CONFIG") or "/etc/crane/config.yaml"
    try:
        with open(path, "rb") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"crane: cannot read config file {path}: {getattr(exc, 'strerror', None) or exc}",
                       2) from None
    if not isinstance(data, dict):
        raise CliError(f"crane: config file {path}: the top level must be a mapping", 2)
    base = os.path.abspath(str(data.get("CraneBaseDir") or "/var/crane/"))
    auth = data.get("Auth") or {}
    key = auth.get("KeyFile") if isinstance(auth, dict) else None
    settings: dict[str, Any] = {"KeyFile": os.path.join(base, os.path.expanduser(key)) if key
                                else os.path.join(base, "cluster.key"),
                                "Cluster": str(data.get("ClusterName") or "crane")}
    extra = ((data.get("Plugins") or {}).get("Settings") or {}).get("rbac") or {}
    if isinstance(extra, dict):
        settings.update(extra)
    return settings


def _keyring(key_file: str) -> jwt_tokens.Keyring:
    try:
        return jwt_tokens.read_keyring(key_file)
    except OSError as exc:
        raise CliError(f"crane: cannot read the cluster key {key_file}: {exc.strerror or exc}", EXIT_SYSTEM) \
            from None
    except ValueError as exc:
        raise CliError(f"crane: {exc}", EXIT_SYSTEM) from None


def lookup_uid(user: str) -> int:
    """The uid of ``user`` from the passwd database (CliError when unknown)."""
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise arg_error(f"crane: no such user {user!r}; give --uid") from None


def write_token(path: str, token: str, owner_uid: int | None = None) -> None:
    """Save ``token`` at ``path`` (0600, never through a planted symlink); one-line error on failure.

    Root writing another user's token (``owner_uid``) does it as that user
    (:func:`crane_cli.tokenfile.write_as_user`: a child with her ids), so the file is hers and root
    never opens a path she controls; otherwise the caller writes it herself.
    """
    from crane_cli import tokenfile

    data = (token + "\n").encode()
    try:
        if owner_uid is not None and os.geteuid() == 0 and owner_uid != 0:
            tokenfile.write_as_user(owner_uid, path, data)
        else:
            tokenfile.write_private(path, data)
    except OSError as exc:
        raise CliError(f"crane: cannot write token to {path}: {getattr(exc, 'strerror', None) or exc}",
                       EXIT_SYSTEM) from None


def default_token_path() -> str:
    """The user's token file (``$XDG_CONFIG_HOME/crane/token``)."""
    from crane_common import tokens

    return tokens.default_token_path()


def cmd_issue(args: SimpleNamespace) -> int:
    """Mint (and optionally save) a token."""
    settings = cluster_settings()
    ttl = args.ttl if args.ttl is not None else int(settings.get("TokenTTL", jwt_tokens.DEFAULT_TTL))
    if ttl < 0:
        raise arg_error("crane: --ttl must not be negative")
    uid = args.uid if args.uid is not None else lookup_uid(args.user)
    if uid < 0:
        raise arg_error("crane: --uid must not be negative")
    key_file = args.key_file or settings["KeyFile"]
    token = jwt_tokens.mint(_keyring(key_file), settings["Cluster"], uid, args.user, args.level, ttl=ttl)
    if args.save:
        import pwd

        try:
            me = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            me = str(os.getuid())
        if me != args.user:
            raise arg_error(f"crane: --save writes your own token file ({me}); use --save-to PATH for {args.user}")
        path = default_token_path()
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


def cmd_show(args: SimpleNamespace) -> int:
    """Show which token the commands would present, and what it claims (nothing is verified)."""
    from crane_common import tokens

    found = tokens.find_client_credential(host_token_file=None)
    if found is None:
        raise CliError(f"crane: no token: ${tokens.TOKEN_ENV} is unset and {default_token_path()} does not exist "
                       "(root on the controller host uses the host token)", EXIT_GENERIC)
    token, source = found
    try:
        payload = jwt_tokens.decode_unverified(token)
    except jwt_tokens.TokenError as exc:
        raise CliError(f"crane: the token from {source} cannot be decoded: {exc}", EXIT_GENERIC) from None
    if args.json:
        import json

        print(json.dumps({"source": source, **payload}, indent=2))
        return EXIT_OK

    def when(ts: object) -> str:
        """A claim's timestamp in local time (``never`` when absent)."""
        if not ts:
            return "never"
        try:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return str(ts)

    exp = payload.get("exp") or 0
    expired = " (expired)" if exp and isinstance(exp, (int, float)) and exp < time.time() else ""
    print(f"source:  {source}")
    print(f"user:    {payload.get('sub')}")
    print(f"uid:     {payload.get('uid')}")
    print(f"level:   {payload.get('lvl', 'none')}")
    print(f"issued:  {when(payload.get('iat'))}")
    print(f"expires: {when(exp)}{expired}")
    print(f"id:      {payload.get('jti')} (key {payload.get('kid')}, audience {payload.get('aud')})")
    return EXIT_OK


def cmd_revoke(args: SimpleNamespace) -> int:
    """Add token ids or users to the revocation list."""
    settings = cluster_settings()
    key_file, revocation_file, _host = auth_paths(settings)
    _keyring(key_file)  # only whoever holds the keyring may revoke
    try:
        revoked = jwt_tokens.Revocations.read(revocation_file)
    except ValueError as exc:
        raise CliError(f"crane: {exc}", EXIT_SYSTEM) from None
    now = time.time()
    for item in args.what:
        if _JTI.match(item) and not args.user:
            revoked.jti[item] = 0.0
            print(f"revoked token {item}")
        else:
            revoked.users[item] = now
            print(f"revoked every token of {item} issued until now")
    try:
        revoked.write(revocation_file, now)
    except OSError as exc:
        raise CliError(f"crane: cannot write {revocation_file}: {exc.strerror or exc}", EXIT_SYSTEM) from None
    return EXIT_OK


def _resign_host_token(path: str, settings: dict[str, Any]) -> None:
    """Re-sign the host token with the new key at once (the controller would only at its next call)."""
    try:
        with open(path) as fh:
            claims = jwt_tokens.decode_unverified(fh.read().strip())
    except (OSError, jwt_tokens.TokenError):
        return
    from crane_auth_rbac import DEFAULT_HOST_TOKEN_TTL

    token = jwt_tokens.mint(jwt_tokens.read_keyring(settings["KeyFile"]), settings["Cluster"], int(claims["uid"]),
                            str(claims["sub"]), str(claims.get("lvl", "none")),
                            ttl=int(settings.get("HostTokenTTL", DEFAULT_HOST_TOKEN_TTL)))
    jwt_tokens.write_private(path, (token + "\n").encode())


def cmd_rotate_key(args: SimpleNamespace) -> int:
    """Add a new signing key to the keyring; older keys keep verifying for the grace window."""
    if args.grace < 0:
        raise arg_error("crane: --grace must not be negative")
    settings = cluster_settings()
    key_file, _revocations, host_file = auth_paths(settings)
    _keyring(key_file)
    try:
        key = jwt_tokens.rotate(key_file, args.grace)
        _resign_host_token(host_file, settings)
    except (OSError, ValueError) as exc:
        raise CliError(f"crane: cannot rotate the keyring {key_file}: {exc}", EXIT_SYSTEM) from None
    print(f"new signing key {key.kid}; older keys verify for {args.grace:g} more seconds")
    return EXIT_OK


def _body(fn: Any) -> Any:
    def callback(**values: object) -> int:
        return fn(SimpleNamespace(**values))

    callback.__doc__ = fn.__doc__
    return callback


def build_command() -> Group:
    """The ``crane token`` group."""
    token = Group("token", help="issue, show and revoke identity tokens; rotate the signing key (the rbac auth plugin)",
                  metavar="ACTION")
    token.add_command(Command("issue", short_help="mint a token with the cluster key (needs read access to it)",
                              callback=_body(cmd_issue), params=[
        Option("--user", required=True, help="user name the token is for"),
        Option("--uid", type=click.INT, help="numeric uid (default: looked up from --user)"),
        Option("--level", type=click.Choice(LEVELS), default="none", help="admin level (default none)"),
        Option("--ttl", type=click.INT, default=None,
               help="lifetime in seconds (default Plugins.Settings.rbac.TokenTTL, 7 days; 0: no expiry)"),
        Option("--key-file", help="cluster key file (default: Auth.KeyFile of the config)"),
        Option("--save", flag=True, default=False, group="save", help="also write it to your token file"),
        Option("--save-to", metavar="PATH", group="save",
               help="also write it to PATH (written as the token's user when run as root)"),
    ]))
    token.add_command(Command("show", short_help="decode the current token without verifying it",
                              callback=_body(cmd_show), params=[
        Option("--json", flag=True, default=False, help="print the claims as JSON"),
    ]))
    token.add_command(Command("revoke", short_help="revoke token ids (jti) or every token of users",
                              callback=_body(cmd_revoke), params=[
        Option("--user", flag=True, default=False, help="treat every argument as a user name"),
        Argument("what", nargs=-1, required=True, metavar="JTI|USER"),
    ]))
    token.add_command(Command("rotate-key", short_help="start signing with a new key",
                              callback=_body(cmd_rotate_key), params=[
        Option("--grace", type=click.FLOAT, default=float(jwt_tokens.DEFAULT_TTL),
               help="seconds the previous keys still verify (default 7 days)"),
    ]))
    return token


command = build_command()
"""The entry point of ``crane token`` (``crane.commands``)."""
