"""`soar lab`: the whole system on this machine, with embedded defaults and the shipped samples
(docs/lab.md)."""

from soar.lab.shipped import Shipped, check_shipped, default_playbooks_dir
from soar.lab.system import LabOptions, run_lab

__all__ = ["LabOptions", "Shipped", "check_shipped", "default_playbooks_dir", "run_lab"]
