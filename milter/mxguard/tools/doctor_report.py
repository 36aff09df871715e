"""The findings of ``mxguard doctor`` and how the report prints them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: ``ok`` or a problem with its fix."""

    ok: bool
    text: str
    fix: str = ""
    note: bool = False  # worth knowing, not wrong


def report(findings: list[Finding]) -> int:
    """Print the findings; 1 when any is a problem."""
    for finding in findings:
        if finding.note:
            print(f"note     {finding.text}")
            print(f"         fix: {finding.fix}")
        elif finding.ok:
            print(f"ok       {finding.text}")
        else:
            print(f"PROBLEM  {finding.text}")
            if finding.fix:
                print(f"         fix: {finding.fix}")
    return 0 if all(finding.ok for finding in findings) else 1
