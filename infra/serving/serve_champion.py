"""Serve the champion's Bento with `bentoml serve`: the serving image's command.

The serving image holds only what a Bento installs (requirements-serve.lock:
BentoML, onnxruntime, no TensorFlow, Prefect, MLflow or Great Expectations)
and no Lockgate source: the Bento brings its own code. So this uses the
standard library only. It reads the Bento tag the last promotion recorded in
``$LOCKGATE_HOME/champion.json`` (or takes ``--bento``), checks that this
environment has every package the Bento pins, at its version, and becomes
``bentoml serve``. A Bento served on Keras (a text model) needs the image
built with ``--build-arg SERVE_LOCK=requirements-serve-keras.lock``; this says
so instead of failing on an import inside a worker.

    python serve_champion.py --host 0.0.0.0 --port 3000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from importlib import metadata
from pathlib import Path

NOTHING_TO_SERVE = 1  # compose restarts the service until the first promotion
MISSING_PACKAGES = 3


class NothingToServe(LookupError):
    pass


def champion_bento(home: Path) -> str:
    pointer = home / "champion.json"
    if not pointer.is_file():
        raise NothingToServe(f"no champion in {home} yet: the first promoted run records one (or pass --bento TAG)")
    recorded = json.loads(pointer.read_text())
    if "bento" not in recorded:
        raise NothingToServe(f"{pointer} names no Bento; pass --bento TAG")
    return recorded["bento"]


def bento_folder(tag: str, bentoml_home: Path) -> Path:
    name, _, version = tag.partition(":")
    versions = bentoml_home / "bentos" / name
    if version in ("", "latest") and (versions / "latest").is_file():
        version = (versions / "latest").read_text().strip()
    folder = versions / version
    if not folder.is_dir():
        raise NothingToServe(f"Bento {tag} is not in the store at {bentoml_home}")
    return folder


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_packages(requirements: Path) -> list[str]:
    """The `name==version` pins of a Bento's requirements that this
    environment lacks or has at another version."""
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    missing = []
    for line in requirements.read_text().splitlines():
        pin = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" not in pin:
            continue
        name, version = (part.strip() for part in pin.split("==", 1))
        name = name.split("[", 1)[0]
        have = installed.get(_canonical(name))
        if have != version:
            missing.append(f"{name}=={version}" + (f" (installed: {have})" if have else ""))
    return missing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bento", help="a Bento tag (default: the champion's, from $LOCKGATE_HOME/champion.json)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    home = Path(os.environ.get("LOCKGATE_HOME", ".lockgate"))
    bentoml_home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    try:
        tag = args.bento or champion_bento(home)
        folder = bento_folder(tag, bentoml_home)
    except NothingToServe as reason:
        print(reason, file=sys.stderr)
        raise SystemExit(NOTHING_TO_SERVE) from None
    lacking = missing_packages(folder / "env" / "python" / "requirements.txt")
    if lacking:
        print(f"Bento {tag} needs packages this image does not have: {', '.join(lacking)}.\n"
              "Build the serving image from the lock the Bento was built with, e.g. "
              "--build-arg SERVE_LOCK=requirements-serve-keras.lock for a model served on Keras.", file=sys.stderr)
        raise SystemExit(MISSING_PACKAGES)
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    print(f"serving {tag} on http://{args.host}:{args.port}", flush=True)
    os.execv(bentoml, [bentoml, "serve", tag, "--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
