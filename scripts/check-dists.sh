#!/usr/bin/env bash
# Build the two distributions (provider and emulator: sdist + wheel), check them with
# `twine check --strict`, and check what each holds: the provider's wheel only what runs in
# Airflow (no emulator, tests or examples), its sdist the examples, tests and docs; the emulator's
# wheel no Airflow requirement. Both carry their pyproject's project URLs (Documentation, Source,
# Changelog, Issues; Airflow shows the provider's Documentation URL). Both claim exactly the Pythons `make test` runs: PYTHON's own (the
# whole suite's) and those of the reduced stages (constraints/airflow-*-pyX.Y.txt), from the lowest
# of them up (Requires-Python). Builds without isolation from the venv's setuptools (pinned).
#
# Usage: scripts/check-dists.sh [PYTHON]   (default .venv/bin/python); leaves the files in dist/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${1:-$root/.venv/bin/python}"
out="$root/dist"
rm -rf "$out" && mkdir -p "$out"
cd "$root"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$python" -m build --no-isolation --sdist --wheel --outdir "$out" . >"$log" 2>&1 || { cat "$log"; exit 1; }
"$python" -m build --no-isolation --sdist --wheel --outdir "$out" emulator >"$log" 2>&1 || { cat "$log"; exit 1; }
rm -rf build emulator/build ./*.egg-info emulator/src/*.egg-info
"$python" -m twine check --strict "$out"/*
"$python" - "$out" <<'PY'
import sys, tarfile, tomllib, zipfile
from pathlib import Path

out = Path(sys.argv[1])
(wheel,) = out.glob("airflow_provider_lotimage-*.whl")
(sdist,) = out.glob("airflow_provider_lotimage-*.tar.gz")
(emu_wheel,) = out.glob("lotimage_emulator-*.whl")
names = zipfile.ZipFile(wheel).namelist()
tops = {name.split("/")[0] for name in names}
assert tops == {"airflow_provider_lotimage", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops
assert not [n for n in names if "emulator" in n or "/tests/" in n], "the provider wheel holds only what runs"
assert any(n.endswith("licenses/LICENSE") for n in names) and any(n.endswith("licenses/NOTICE") for n in names)
members = tarfile.open(sdist).getnames()
for folder in ("example_dags", "tests", "docs", "LICENSE", "NOTICE", "CHANGELOG.md"):
    assert any(m.split("/", 1)[1:] and m.split("/", 1)[1].startswith(folder) for m in members), folder
emu = zipfile.ZipFile(emu_wheel)
meta = next(n for n in emu.namelist() if n.endswith("METADATA"))
requires = [l for l in emu.read(meta).decode().splitlines() if l.startswith("Requires-Dist:")]
assert not [r for r in requires if "airflow" in r.lower()], requires
tested = {f"{sys.version_info[0]}.{sys.version_info[1]}"}
tested |= {path.stem.rsplit("-py", 1)[1] for path in (out.parent / "constraints").glob("airflow-*-py*.txt")}
lowest = min(tested, key=lambda version: tuple(map(int, version.split("."))))
for built in (wheel, emu_wheel):
    archive = zipfile.ZipFile(built)
    lines = archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))).decode().splitlines()
    claimed = {l.rsplit(" :: ", 1)[1] for l in lines if l.startswith("Classifier: Programming Language :: Python :: 3.")}
    assert claimed == tested, f"{built.name} claims Python {sorted(claimed)}; make test runs {sorted(tested)}"
    assert f"Requires-Python: >={lowest}" in lines, (built.name, lowest)
    urls = dict(tuple(part.strip() for part in l.split(":", 1)[1].split(",", 1)) for l in lines if l.startswith("Project-URL:"))
    project = tomllib.loads((out.parent / ("emulator" if built is emu_wheel else "") / "pyproject.toml").read_text())
    assert set(urls) == {"Documentation", "Source", "Changelog", "Issues"}, (built.name, urls)
    assert urls == project["project"]["urls"], (built.name, urls)
print(f"distributions OK: {', '.join(sorted(p.name for p in out.iterdir()))}")
PY
