"""`soar-forensics verify STORE_DIR SHA256` (or `python -m soar_forensics verify ...`): recompute
an artifact's SHA-256 and check it, its size and its chain of custody against its record."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from soar_forensics._store import ArtifactStore


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status is 0 when every artifact checked is intact, 1
    when one is not, 2 for a usage error."""
    parser = argparse.ArgumentParser(
        prog="soar-forensics", description="Check artifacts in a soar evidence store."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "verify", help="recompute artifacts' SHA-256 and check them against their records"
    )
    verify.add_argument("store_dir", type=Path, help="the store directory (settings.store_dir)")
    verify.add_argument("sha256", nargs="+", help="the SHA-256 of each artifact to check")
    args = parser.parse_args(argv)
    store = ArtifactStore(args.store_dir)
    failed = False
    for sha256 in args.sha256:
        problems = store.verify(sha256.lower())
        if problems:
            failed = True
            print(f"FAILED {sha256}", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
        else:
            record = store.read_record(sha256.lower())
            custody = record.get("custody")
            entries = len(custody) if isinstance(custody, list) else 0
            print(
                f"OK {sha256}: {record.get('size')} bytes match the record; "
                f"chain of custody intact ({entries} entries)"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
