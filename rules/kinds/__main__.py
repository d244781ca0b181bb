"""``python -m urbanbrain.rules.kinds``: write rules/schema/rules.schema.json from the core
and the registered kinds (after adding or changing a kind)."""

from urbanbrain.rules.kinds.schema import SCHEMA_PATH, render

SCHEMA_PATH.write_text(render())
print(f"wrote {SCHEMA_PATH}")
