"""The headless Chromium the browser tests drive: where it is and how it is started."""

from __future__ import annotations

import os
import shutil

REQUIRED = os.environ.get("VITLENS_REQUIRE_BOOK") == "1"
"""CI sets ``VITLENS_REQUIRE_BOOK=1``: a missing book or browser is then a failure."""

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Flags for a closed network: without the background-networking ones, Chromium's own
connections are refused many at a time."""
