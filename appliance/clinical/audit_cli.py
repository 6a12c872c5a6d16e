"""`bedside audit verify|export` and `bedside export --format fhir`.

`audit verify` reads JSON lines of audit entries (from `bedside audit export`, or
collected at the broker: the `entries` of each `audit` publish, one per line; a
whole publish payload per line is accepted too) and checks them against the box's
certificate; it names the first broken link and exits 1 there. `export --format
fhir` maps what the box holds (the store's observations and alarms, the journal's
resources not yet delivered) to one FHIR R4 transaction Bundle, with the charting
rules of the running gateway (paired, consented, not invalid, one value per
interval).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from appliance.core.errors import EXIT_ERROR, EXIT_OK, BedsideInputError

__all__ = ["add_parsers"]


class AuditUsageError(BedsideInputError):
    """A bad argument or file for the audit and export commands (exit 2)."""


def _public_key(path: str) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AuditUsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        key: Any = x509.load_pem_x509_certificate(data).public_key()
    except ValueError:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise AuditUsageError(f"{path}: neither a PEM certificate nor a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise AuditUsageError(f"{path}: the box key is EC P-256; this certificate's key is not")
    return key


def _entries(source: TextIO, name: str) -> Iterator[Any]:
    from appliance.clinical.chain import from_line

    for number, line in enumerate(source, start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith('{"entries":'):  # a whole `audit` publish payload
            try:
                payload = json.loads(text)
            except ValueError:
                raise AuditUsageError(f"{name}:{number}: not JSON") from None
            for entry in payload.get("entries", []):
                yield from_line(json.dumps(entry), f"{name}:{number}")
        else:
            yield from_line(text, f"{name}:{number}")


def cmd_audit(args: argparse.Namespace) -> int:
    if args.audit_command == "export":
        return _export_audit(args)
    from appliance.clinical.chain import verify_chain

    key = _public_key(args.cert)
    name = "<stdin>" if args.file == "-" else args.file
    try:
        source = sys.stdin if args.file == "-" else Path(args.file).open(encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise AuditUsageError(f"{name}: cannot read: {exc.strerror}") from None
    try:
        with source:
            entries = _entries(source, name)
            if args.gateway:
                entries = (e for e in entries if e.gw == args.gateway)
            verdict = verify_chain(entries, key, from_genesis=args.from_genesis)
    except UnicodeDecodeError:
        raise AuditUsageError(f"{name}: not UTF-8 text") from None
    print(f"{name}: {verdict.line()}")
    return EXIT_OK if verdict.ok else EXIT_ERROR


def _journal(config_path: str) -> Any:
    from appliance.clinical.journal import Journal
    from appliance.config import load_config
    from appliance.queue.seal import Sealer, load_or_create_key

    cfg = load_config(config_path)
    if not cfg.audit.journal_path:
        raise AuditUsageError(f"{config_path}: audit.journal_path: not set, so there is no journal")
    if not Path(cfg.audit.journal_path).exists():
        raise AuditUsageError(f"{cfg.audit.journal_path}: no journal yet (the gateway creates it on first run)")
    return Journal(cfg.audit.journal_path, Sealer(load_or_create_key(cfg.queue.key_path, create=False)))


def _export_audit(args: argparse.Namespace) -> int:
    from appliance.clinical.chain import to_line

    journal = _journal(args.config)
    try:
        count = 0
        for entry in journal.export_audit():
            sys.stdout.write(to_line(entry) + "\n")
            count += 1
    finally:
        journal.close()
    print(f"{journal.path}: {count} audit entries", file=sys.stderr)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from appliance.clinical.export import fhir_bundle

    bundle, counts = fhir_bundle(args.config, args.interval)
    text = json.dumps(bundle, indent=1 if args.pretty else None, separators=None if args.pretty else (",", ":"))
    if args.out:
        try:
            Path(args.out).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise AuditUsageError(f"{args.out}: cannot write: {exc.strerror}") from None
    else:
        sys.stdout.write(text + "\n")
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "nothing to export"
    print(f"transaction Bundle: {summary}", file=sys.stderr)
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the audit trail: verify a chain, export it from the box")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="check hashes, links and signatures; names the first broken link (exit 1 there)"
    )
    verify.add_argument("file", nargs="?", default="-", help="audit entries as JSON lines, or - for stdin")
    verify.add_argument("--cert", required=True, help="the box's certificate (or public key), PEM")
    verify.add_argument("--from-genesis", action="store_true", help="the chain must start at seq 1")
    verify.add_argument("--gateway", default=None, help="only this gateway's entries (a file collected from many)")
    export = audit_sub.add_parser("export", help="every audit entry kept on the box, as JSON lines")
    export.add_argument("--config", required=True, help="gateway config (for the journal and the store's key)")
    audit.set_defaults(func=cmd_audit)

    fhir = sub.add_parser("export", help="what the box holds as a FHIR R4 transaction Bundle")
    fhir.add_argument("--config", required=True, help="gateway config (store, journal, rules, patient id system)")
    fhir.add_argument("--format", choices=("fhir",), default="fhir", help="fhir: a transaction Bundle (JSON)")
    fhir.add_argument("--out", default=None, help="write here instead of stdout")
    fhir.add_argument(
        "--interval", type=float, default=None,
        help="one value per patient, device and metric per this many seconds (default: the config's)",
    )  # fmt: skip
    fhir.add_argument("--pretty", action="store_true", help="indented JSON")
    fhir.set_defaults(func=cmd_export)
