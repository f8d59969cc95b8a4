"""JSON Schemas of the input events, generated from the models, for producers."""

from __future__ import annotations

import json
from typing import Any

from models.events import INPUTS


def input_schemas() -> dict[str, str]:
    """File name -> schema text (stable formatting, so the checked-in copies can be compared)."""
    files = {}
    for topic, (model, rule) in INPUTS.items():
        schema: dict[str, Any] = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["description"] = f"TierPulse input topic '{topic}'. {rule} Unknown fields are ignored."
        files[f"{topic}.schema.json"] = (
            json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        )
    return files
