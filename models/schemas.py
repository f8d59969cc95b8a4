"""JSON Schemas of the input events, generated from the models, for producers."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from models.events import ComplaintEvent, CustomerProfile, OrderEvent, TicketEvent, Topic

_MODELS: dict[Topic, type[BaseModel]] = {
    Topic.ORDERS: OrderEvent,
    Topic.TICKETS: TicketEvent,
    Topic.COMPLAINTS: ComplaintEvent,
    Topic.CUSTOMERS: CustomerProfile,
}
_RULES = {
    Topic.ORDERS: "amount is required on 'placed'; promised_at on 'placed' and 'delivered'.",
    Topic.TICKETS: "priority is required on 'opened'; satisfaction is allowed only on 'resolved'.",
    Topic.COMPLAINTS: "A repeated complaint_id is a duplicate.",
    Topic.CUSTOMERS: "Compacted: the latest record per customer_id decides the policy segment.",
}


def input_schemas() -> dict[str, str]:
    """File name -> schema text (stable formatting, so the checked-in copies can be compared)."""
    files = {}
    for topic, model in _MODELS.items():
        schema: dict[str, Any] = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["description"] = (
            f"TierPulse input topic '{topic}'. {_RULES[topic]} Unknown fields are ignored."
        )
        files[f"{topic}.schema.json"] = (
            json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        )
    return files
