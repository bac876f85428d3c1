"""The expression and template language of playbooks: restricted Python expressions, compiled
once into closures over plain data (see docs/expressions.md)."""

from soar.playbook.expr.expression import Expression, compile_expression
from soar.playbook.expr.functions import FUNCTIONS
from soar.playbook.expr.references import ROOTS, FunctionCall, Reference
from soar.playbook.expr.registry import Function
from soar.playbook.expr.template import Template, compile_template

__all__ = [
    "FUNCTIONS",
    "ROOTS",
    "Expression",
    "Function",
    "FunctionCall",
    "Reference",
    "Template",
    "compile_expression",
    "compile_template",
]
