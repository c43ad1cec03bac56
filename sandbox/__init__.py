"""Running model-written programs safely: nsjail isolation with a warm worker pool, static checks,
task validation and answer checking. Imports nothing from `stages` or `azr_cli`."""

from sandbox.checks import InputError, StaticCheck, check_input, check_program, describe_rules, parse_input
from sandbox.config import SandboxConfig
from sandbox.errors import SandboxUnavailable
from sandbox.pool import Sandbox, UnsafeSandboxWarning, open_sandbox, run_fresh
from sandbox.result import ExecResult, Status
from sandbox.tasks import (
    AbductionAnswer,
    AnswerCheck,
    DeductionAnswer,
    InductionAnswer,
    TaskValidation,
    check_abduction,
    check_answers,
    check_induction,
    validate_task,
    validate_tasks,
)
from sandbox.values import canonical, check_deduction, parse_literal, same_literal, same_value

__all__ = [
    "AbductionAnswer",
    "AnswerCheck",
    "DeductionAnswer",
    "ExecResult",
    "InductionAnswer",
    "InputError",
    "Sandbox",
    "SandboxConfig",
    "SandboxUnavailable",
    "StaticCheck",
    "Status",
    "TaskValidation",
    "UnsafeSandboxWarning",
    "canonical",
    "check_abduction",
    "check_answers",
    "check_deduction",
    "check_induction",
    "check_input",
    "check_program",
    "describe_rules",
    "open_sandbox",
    "parse_input",
    "parse_literal",
    "run_fresh",
    "same_literal",
    "same_value",
    "validate_task",
    "validate_tasks",
]
