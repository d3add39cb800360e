"""``wellpulse keys rotate|rotate-data-key``: new generated keys in the data dir (the old ones stay readable)."""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from config import load_settings
from config.secrets import ROTATING_SECRETS, rotate_secret

__all__ = ["add_keys_commands"]


def _rotate_key(field: str, variable: str):
    def run(args: argparse.Namespace) -> int:
        settings = load_settings(**({"data_dir": Path(args.data_dir)} if args.data_dir else {}))
        if getattr(settings, field) is not None:
            print(f"error: {variable} is configured: rotate it there (its old value goes to "
                  f"{ROTATING_SECRETS[field][1]}), then restart", file=sys.stderr)
            return 2
        kid = rotate_secret(Path(settings.data_dir), field)
        print(json.dumps({"rotated": field, "kid": kid, "data_dir": str(settings.data_dir),
                          "next": "restart wellpulse up: it uses the new key and still accepts the previous one"}))
        return 0

    return run


def add_keys_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="rotate the generated keys in the data dir")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    for name, field, variable, what in (
        ("rotate", "jwt_secret", "WELLPULSE_JWT_SECRET",
         "new access-token signing key; tokens of the old one stay valid until they expire"),
        ("rotate-data-key", "data_key", "WELLPULSE_DATA_KEY",
         "new key for secrets at rest; the next start re-encrypts what the old one sealed"),
    ):
        cmd = keys_sub.add_parser(name, help=what)
        cmd.add_argument("--data-dir", help="data dir of the wellpulse up to rotate (default .wellpulse)")
        cmd.set_defaults(func=_rotate_key(field, variable))
