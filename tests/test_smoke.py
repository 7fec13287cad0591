from __future__ import annotations

from cargohold.core import Runtime


def test_volume_round_trip_survives_restart(runtime: Runtime) -> None:
    runtime.volumes.create("data", labels={"team": "a"})
    path = runtime.volumes.mount("data", "c1")
    (path / "f").write_text("kept")
    runtime.volumes.unmount("data", "c1")
    runtime.close()
    with Runtime(runtime.state_dir) as again:
        volume = again.volumes.get("data")
        assert volume.labels == {"team": "a"}
        assert (again.volumes.mount("data", "c2") / "f").read_text() == "kept"
