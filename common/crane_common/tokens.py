"""Finding the credential a client presents: stdlib only, nothing here signs or verifies.

Tokens are minted and verified by the auth plugins (``crane_auth_rbac``: JWTs; ``crane token
issue``); a client only finds one and sends it as ``authorization: Bearer <token>``. The lookup
order of :func:`find_client_credential`:

1. ``$CRANE_TOKEN``;
2. the user's token file, ``$XDG_CONFIG_HOME/crane/token`` (default ``~/.config/crane/token``);
3. the *host token* (``root.token`` beside the cluster keyring, mode 0600): the controller's auth
   plugin keeps a short-lived token for its own user there, so root on the controller host is
   recognised without a token of its own. Nobody else can read it.

A MUNGE credential (``crane_cli.munge``) is an alternative the client config can select.
"""

from __future__ import annotations

import os

TOKEN_ENV = "CRANE_TOKEN"
TOKEN_FILE_NAME = "token"
HOST_TOKEN_NAME = "root.token"


def default_token_path() -> str:
    """Where a user's token is kept: ``$XDG_CONFIG_HOME/crane/token`` (default ``~/.config/crane/token``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "crane", TOKEN_FILE_NAME)


def host_token_path(key_file: str | None) -> str | None:
    """The host token file beside the cluster keyring ``key_file`` (None without one)."""
    return os.path.join(os.path.dirname(os.path.abspath(key_file)), HOST_TOKEN_NAME) if key_file else None


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read(65536).strip()
    except (OSError, UnicodeDecodeError):
        return ""


def find_client_credential(host_token_file: str | None) -> tuple[str, str] | None:
    """``(token, where it came from)`` for a CLI call, or None (see the module docs for the order)."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, f"${TOKEN_ENV}"
    path = default_token_path()
    token = _read(path)
    if token:
        return token, path
    if host_token_file:
        token = _read(host_token_file)
        if token:
            return token, host_token_file
    return None


def find_client_token(key_file: str | None = None, host_token_file: str | None = None) -> str | None:
    """The bearer token a client should present, or None.

    ``host_token_file`` defaults to the one beside ``key_file`` (:func:`host_token_path`).
    """
    found = find_client_credential(host_token_file or host_token_path(key_file))
    return found[0] if found else None
