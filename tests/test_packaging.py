"""The wheel claims no generic top-level names: every folder lives under `billbridge.`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_maps_every_folder_under_the_billbridge_namespace(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("billbridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {
        "billbridge",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    # Every Python file of every folder the wheel maps, subpackages included.
    folders = ("workflows", "activities", "workers", "starter", "core", "emulators")
    for folder in folders:
        for source in (ROOT / folder).rglob("*.py"):
            assert f"billbridge/{source.relative_to(ROOT).as_posix()}" in names, source
    assert not any(name.startswith("billbridge/tests") for name in names)
