"""Generate the committed dashboard JSON: ``python -m urbanbrain.dashboards.build [OUT_DIR]``.

The JSON under dashboards/json is what Grafana's file provisioning reads (compose.yaml mounts
it at /var/lib/grafana/dashboards). It is generated from spec.py, committed, and a test
checks that the committed files equal what this module produces, so the two never drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from urbanbrain.dashboards.spec import dashboards

JSON_DIR = Path(__file__).resolve().parent / "json"


def build() -> dict[str, dict]:
    """file name → dashboard JSON model."""
    out: dict[str, dict] = {}
    for d in dashboards():
        name = d.uid.removeprefix("urbanbrain-") + ".json"
        if name in out:
            raise ValueError(f"two dashboards map to {name}")
        out[name] = d.to_json()
    return out


def render(model: dict) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def write(out_dir: Path = JSON_DIR) -> list[Path]:
    """Write every dashboard and remove stale generated files; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    models = build()
    for stale in out_dir.glob("*.json"):
        if stale.name not in models:
            stale.unlink()
    paths = []
    for name, model in models.items():
        path = out_dir / name
        path.write_text(render(model), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for p in write(Path(args[0]) if args else JSON_DIR):
        print(p)


if __name__ == "__main__":
    main()
