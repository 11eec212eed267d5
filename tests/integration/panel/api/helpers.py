"""Helpers of the API's tests."""

from __future__ import annotations
