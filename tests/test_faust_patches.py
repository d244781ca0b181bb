"""The faust-streaming patches a restart without loss depends on (streams/faust_patches.py)
apply to the pinned release only, and a worker refuses any other."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import pytest

from urbanbrain.streams import faust_patches

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_pins_the_verified_release() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"faust-streaming=={faust_patches.VERIFIED_VERSION}" in deps


def test_the_installed_release_is_verified_and_the_patches_apply() -> None:
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer

    assert faust_patches.mismatches() == []
    assert faust_patches.apply() is True
    assert Recovery.on_recovery_completed is faust_patches._on_recovery_completed
    assert Consumer._new_offset is faust_patches._new_offset
    assert Consumer.wait_empty is faust_patches._wait_empty_bounded
    assert faust_patches.apply() is True  # idempotent


def test_a_changed_upstream_method_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    real = inspect.getsource

    def changed(fn):  # noqa: ANN001, ANN202 - stands for a new faust release's source
        src = real(fn)
        return src + "\n# changed upstream\n" if fn.__name__ == "_new_offset" else src

    monkeypatch.setattr(inspect, "getsource", changed)
    monkeypatch.setattr(faust_patches, "_applied", False)
    assert faust_patches.mismatches() == ["Consumer._new_offset"]
    with pytest.raises(faust_patches.FaustPatchError, match="Consumer._new_offset") as exc:
        faust_patches.apply()
    assert exc.value.exit_code == 78
