"""Stanch: graduated, reversible, audited identity containment on Temporal."""

__version__ = "0.1.0"
