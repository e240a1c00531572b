"""Limits an extraction request states and its answer's schema enforces.

The system prompt tells the model how many records one answer may hold and the tool schema
(`doxa.llm.schema`) refuses more; both read the number here, upstream of both.
"""

from __future__ import annotations

MAX_RECORDS = 6
"""Records one extraction answer may propose."""
