"""The tamper-evident audit log: canonical encoding, Merkle tree, signing keys, export,
verification and proofs (docs/audit.md)."""

from soar.audit.canonical import canonical
from soar.audit.export import export_lines
from soar.audit.keys import Keyring, check_checkpoint, checkpoint_line, key_id, load_public_keys
from soar.audit.merkle import CompactRange
from soar.audit.proofs import check_consistency, check_inclusion, prove_consistency, prove_inclusion
from soar.audit.verify import Problem, ProblemKind, VerifyReport, verify_export

__all__ = [
    "CompactRange",
    "Keyring",
    "Problem",
    "ProblemKind",
    "VerifyReport",
    "canonical",
    "check_checkpoint",
    "check_consistency",
    "check_inclusion",
    "checkpoint_line",
    "export_lines",
    "key_id",
    "load_public_keys",
    "prove_consistency",
    "prove_inclusion",
    "verify_export",
]
