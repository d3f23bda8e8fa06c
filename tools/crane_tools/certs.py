"""``crane certs``: a cluster CA and the certificates of TLS on the gRPC API (``cryptography``).

::

    crane certs init  [--dir DIR] [--cluster NAME] [--days N]
    crane certs issue --server NAME [--host H]... [--dir DIR] [--days N]   cranectld's certificate
    crane certs issue --client NAME [--dir DIR] [--days N]                 a node's or an admin tool's (mTLS)

``DIR`` defaults to ``<CraneBaseDir>/tls`` of the cluster config. ``init`` writes ``ca.crt``
and ``ca.key`` (0600); ``issue`` writes ``NAME.crt`` and ``NAME.key`` (0600) signed by that CA.
A server certificate names its hosts as subject alternative names (default: NAME; IP
addresses become IP SANs), and a client certificate carries NAME as its common name. Keys are
ECDSA P-256. Point ``CraneCtld.Tls`` at the files (docs/security.md, "Identity and TLS").
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys

DEFAULT_DAYS_CA = 3650
DEFAULT_DAYS = 825


def _private_write(path: str, data: bytes, mode: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                             serialization.NoEncryption())


def _cert_pem(cert: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]


def init_ca(directory: str, cluster: str = "crane", days: int = DEFAULT_DAYS_CA, force: bool = False) -> str:
    """Create the cluster CA (``ca.crt``, ``ca.key``) in ``directory``; return the certificate's path.

    An existing CA is kept unless ``force`` (every certificate it signed would have to be re-issued).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, mode=0o755, exist_ok=True)
    crt, keyp = os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key")
    if os.path.exists(crt) and not force:
        raise FileExistsError(f"{crt} exists (give --force to replace the CA)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cranesched"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"crane CA {cluster}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _private_write(keyp, _key_pem(key), 0o600)
    _private_write(crt, _cert_pem(cert), 0o644)
    return crt


def issue(directory: str, name: str, *, server: bool, hosts: list[str] | None = None,
          days: int = DEFAULT_DAYS) -> tuple[str, str]:
    """Issue ``NAME.crt``/``NAME.key`` signed by the CA in ``directory``; return their paths.

    ``server``: a TLS server certificate for ``hosts`` (DNS names or IP addresses, default
    ``[name]``); otherwise a client certificate with common name ``name``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad certificate name {name!r}")
    with open(os.path.join(directory, "ca.crt"), "rb") as fh:
        ca_cert = x509.load_pem_x509_certificate(fh.read())
    with open(os.path.join(directory, "ca.key"), "rb") as fh:
        ca_key = serialization.load_pem_private_key(fh.read(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cranesched"),
                                        x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
                              critical=False))
    if server:
        sans: list[x509.GeneralName] = []
        for host in hosts or [name]:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = (builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    crt, keyp = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
    _private_write(keyp, _key_pem(key), 0o600)
    _private_write(crt, _cert_pem(cert) + _cert_pem(ca_cert), 0o644)
    return crt, keyp


def _default_dir() -> tuple[str, str]:
    """``(<CraneBaseDir>/tls, ClusterName)`` from the cluster config (``/var/crane/tls`` without one)."""
    import yaml

    path = os.environ.get("CRANE_CONFIG") or "/etc/crane/config.yaml"
    try:
        with open(path, "rb") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    return os.path.join(str(data.get("CraneBaseDir") or "/var/crane/"), "tls"), str(data.get("ClusterName") or "crane")


def main(argv: list[str]) -> int:
    """``crane certs init|issue``; the exit code."""
    ap = argparse.ArgumentParser(prog="crane certs", description="a cluster CA and TLS certificates")
    sub = ap.add_subparsers(dest="action", required=True, metavar="ACTION")
    p_init = sub.add_parser("init", help="create the cluster CA")
    p_init.add_argument("--dir", help="where the files go (default <CraneBaseDir>/tls)")
    p_init.add_argument("--cluster", help="cluster name in the CA's name (default ClusterName)")
    p_init.add_argument("--days", type=int, default=DEFAULT_DAYS_CA, help=f"validity (default {DEFAULT_DAYS_CA})")
    p_init.add_argument("--force", action="store_true", help="replace an existing CA")
    p_issue = sub.add_parser("issue", help="issue a server or client certificate")
    kind = p_issue.add_mutually_exclusive_group(required=True)
    kind.add_argument("--server", metavar="NAME", help="cranectld's certificate (file name NAME)")
    kind.add_argument("--client", metavar="NAME", help="a node's or admin tool's certificate (common name NAME)")
    p_issue.add_argument("--host", action="append", help="a host name or IP the server answers on (repeatable)")
    p_issue.add_argument("--dir", help="the CA's directory (default <CraneBaseDir>/tls)")
    p_issue.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"validity (default {DEFAULT_DAYS})")
    args = ap.parse_args(argv)
    default_dir, cluster = _default_dir()
    directory = args.dir or default_dir
    if args.days <= 0:
        print("crane certs: --days must be positive", file=sys.stderr)
        return 2
    try:
        if args.action == "init":
            print(init_ca(directory, args.cluster or cluster, args.days, args.force))
            return 0
        name = args.server or args.client
        crt, key = issue(directory, name, server=bool(args.server), hosts=args.host, days=args.days)
    except (OSError, ValueError) as exc:
        print(f"crane certs: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 6
    print(crt)
    print(key)
    return 0
