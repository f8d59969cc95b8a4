"""JSON Schemas of the input events (for producers) and the output messages (for consumers such
as the CRM), generated from the models."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from models.events import INPUTS
from models.outputs import SCHEMA_VERSION, AlertMessage, DeadLetterMessage, TierChangeMessage

# Output messages by their default topic.
OUTPUTS: dict[str, type[BaseModel]] = {
    "customer-tier-changes": TierChangeMessage,
    "customer-alerts": AlertMessage,
    "tierpulse-dead-letters": DeadLetterMessage,
}


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


def output_schemas() -> dict[str, str]:
    """File name -> schema text of each output topic's messages."""
    files = {}
    for topic, model in OUTPUTS.items():
        schema: dict[str, Any] = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["description"] = (
            f"TierPulse output topic '{topic}' (contract version {SCHEMA_VERSION}, the messages' "
            f"tierpulse-schema-version header). {schema.get('description', '')}"
        ).strip()
        files[f"{topic}.schema.json"] = (
            json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        )
    return files
