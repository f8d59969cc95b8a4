"""What every benchmark against the local services does around its own measurements."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from deploy import services


def run_on_services(
    measure: Callable[..., Awaitable[dict[str, Any]]],
    report: Callable[[dict[str, Any]], str],
    json_path: str | None,
    *args: Any,
) -> dict[str, Any]:
    """Start the local services (before the event loop: their start-up probes run their own),
    run ``measure(*args, layout)``, print its report, keep its numbers as JSON."""
    layout = services.Layout.from_env()
    services.up(layout)
    result = asyncio.run(measure(*args, layout))
    print("\n" + report(result))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result
