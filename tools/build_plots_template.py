"""Build the offline HTML template `dvc plots show` / `dvc plots diff` render into (.dvc/plots/).

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so offline it is blank. This
template inlines the three libraries (pinned below, from the npm registry), so the page DVC writes
(dvc_plots/index.html) is self-contained. `.dvc/config` points `plots.html_template` at it. The
libraries are BSD-3-Clause (University of Washington Interactive Data Lab); their licences are kept
beside the template. Rerun to change versions (needs `npm`):

    python tools/build_plots_template.py            # npm pack the pinned versions, rebuild
    python tools/build_plots_template.py --from DIR # DIR holds the three unpacked npm tarballs
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {"vega": "5.33.1", "vega-lite": "5.23.0", "vega-embed": "6.29.0"}
OUT = Path(__file__).resolve().parents[1] / ".dvc" / "plots"

# {refresh_tag} and {plot_divs} are DVC's placeholders (filled when it renders); no {scripts}: that is
# where DVC would put its CDN <script> tags. @LIBS@, @VERSIONS@ are filled here.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>vlmcot plots (DVC)</title>
    <!-- @VERSIONS@ inlined by tools/build_plots_template.py (BSD-3-Clause, licences in .dvc/plots/):
         this page needs no network -->
@LIBS@
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def build(src: Path) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    scripts = []
    for name, version in PACKAGES.items():
        pkg = src / f"{name}-{version}" / "package"
        js = (pkg / "build" / f"{name}.min.js").read_text(encoding="utf-8")
        if "</script" in js:
            raise SystemExit(f"{name}: the minified build contains '</script', cannot inline it")
        scripts.append(f'    <script data-lib="{name}@{version}">\n{js}\n    </script>')
        licence = pkg / "LICENSE"
        text = licence.read_text(encoding="utf-8") if licence.exists() else None
        if text is None:  # vega's npm tarball ships none: the same BSD-3 text as its sibling packages
            sibling = (src / f"vega-lite-{PACKAGES['vega-lite']}" / "package" / "LICENSE").read_text(encoding="utf-8")
            text = sibling
        (OUT / f"LICENSE.{name}.txt").write_text(f"{name} {version} (npm), BSD-3-Clause\n\n{text}", encoding="utf-8")
    versions = ", ".join(f"{n} {v}" for n, v in PACKAGES.items())
    page = PAGE.replace("@VERSIONS@", versions).replace("@LIBS@", "\n".join(scripts))
    path = OUT / "template.html"
    path.write_text(page, encoding="utf-8")
    return path


def npm_pack(dest: Path) -> None:
    subprocess.run(["npm", "pack", *(f"{n}@{v}" for n, v in PACKAGES.items())], cwd=dest, check=True)
    for name, version in PACKAGES.items():
        with tarfile.open(dest / f"{name}-{version}.tgz") as tar:
            tar.extractall(dest / f"{name}-{version}", filter="data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="src", help="folder with the unpacked npm tarballs (<name>-<version>/package)")
    args = ap.parse_args()
    if args.src:
        print(build(Path(args.src)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        npm_pack(Path(tmp))
        print(build(Path(tmp)))


if __name__ == "__main__":
    main()
