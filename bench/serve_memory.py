"""Memory of the real `facerec serve` under mixed large uploads: what a server keeps after an
afternoon of photos from 1 MP to the pixel limit.

    python -m bench.serve_memory [--rounds N] [--output FILE]   (`make bench-serve-memory`)

1. The sample domain's gallery built by `run_domain` (bench/serve_load.py) and `facerec serve`
   started as a subprocess (one uvicorn worker, --max-upload-mb 100), timed until ready.
2. Large photos made from scikit-image's astronaut (whose face the sample domain enrolls as
   Eileen Collins), upscaled with Lanczos: a 24 MP and a 48 MP JPEG, a 59 MP PNG (just under the
   60 MP limit) and a 12 MP 16-bit grey PNG; with them the 1-2 MP photos serve_load sends.
3. Rounds, one client: each large photo once, then the small photos. The server's RSS (psutil,
   sampled every 0.1 s) is reported at ready, its peak, after each round, and 10 s after the
   last answer; each kind's latency and whether it was named.

Writes its section of BENCHMARKS.md (between the serve-memory markers) and prints it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import REPO, measured_on, write_section
from bench.serve_load import Server, build_gallery, issue_token, small_data

BEGIN, END = "<!-- serve-memory:begin -->", "<!-- serve-memory:end -->"
MIB = 1024 * 1024


@dataclass
class Kind:
    name: str
    path: Path
    media_type: str
    pixels: int
    file_bytes: int = 0
    seconds: list[float] = field(default_factory=list)
    named: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


def large_photos(folder: Path) -> list[Kind]:
    """The large uploads, made once per run from the astronaut."""
    from skimage import data as skimage_data

    folder.mkdir(parents=True, exist_ok=True)
    astronaut = Image.fromarray(skimage_data.astronaut())
    made = []
    for name, (width, height), form in (
        ("24 MP JPEG", (5664, 4248), "JPEG"),
        ("48 MP JPEG", (8000, 6000), "JPEG"),
        ("59 MP PNG", (8868, 6652), "PNG"),
        ("12 MP 16-bit grey PNG", (4000, 3000), "PNG16"),
    ):
        side = min(width, height)
        square = astronaut.resize((side, side), Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", (width, height), (128, 128, 128))
        canvas.paste(square, ((width - side) // 2, 0))
        path = folder / f"{name.split()[0]}_{form.lower()}.{'jpg' if form == 'JPEG' else 'png'}"
        if form == "JPEG":
            canvas.save(path, quality=90)
        elif form == "PNG":
            canvas.save(path, compress_level=6)
        else:
            grey = np.asarray(canvas.convert("L"), dtype=np.uint16) * 257
            Image.fromarray(grey).save(path)  # uint16: mode I;16
        media = "image/jpeg" if form == "JPEG" else "image/png"
        made.append(Kind(name, path, media, width * height, path.stat().st_size))
    return made


def post(server: Server, token: str, kind: Kind) -> None:
    import requests

    start = time.perf_counter()
    with kind.path.open("rb") as file:
        answer = requests.post(
            f"{server.url}/v1/recognize",
            headers={"Authorization": f"Bearer {token}"},
            files={"file": (kind.path.name, file, kind.media_type)},
            timeout=300,
        )
    kind.seconds.append(time.perf_counter() - start)
    status = str(answer.status_code)
    kind.statuses[status] = kind.statuses.get(status, 0) + 1
    if answer.status_code == 200:
        kind.named += any(face.get("identity") for face in answer.json()["faces"])


def report(kinds: list[Kind], rss: dict, rounds: int, ready: float) -> str:
    lines = [
        BEGIN,
        "## Server memory under mixed large uploads (`make bench-serve-memory`)",
        "",
        measured_on(),
        "",
        "The sample domain's gallery built with `run_domain`; the real `facerec serve` (one "
        f"uvicorn worker, `--max-upload-mb 100`) ready after {ready:.1f} s. {rounds} rounds, one "
        "client: each large photo once (the astronaut upscaled, whom the gallery enrolls as "
        "Eileen Collins), then the 1-2 MP photos of `make bench-serve`.",
        "",
        "| photo | MP | file MiB | answers | named | median s | max s |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        answers = ", ".join(f"{n}x {status}" for status, n in sorted(kind.statuses.items()))
        lines.append(
            f"| {kind.name} | {kind.pixels / 1e6:.1f} | {kind.file_bytes / MIB:.1f} | "
            f"{answers} | {kind.named}/{len(kind.seconds)} | "
            f"{statistics.median(kind.seconds):.2f} | {max(kind.seconds):.2f} |"
        )
    after = ", ".join(f"{value / MIB:.0f}" for value in rss["after_round"])
    lines += [
        "",
        f"Server RSS (MiB, with any children): ready {rss['ready'] / MIB:.0f}; peak "
        f"{rss['peak'] / MIB:.0f}; after each round {after}; 10 s after the last answer "
        f"{rss['settled'] / MIB:.0f}.",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facerec-serve-memory-") as tmp:
        work = Path(tmp)
        data = small_data(work / "data")
        print("building the gallery with run_domain...", flush=True)
        settings, _, _ = build_gallery(data, work / "root")
        token = issue_token(settings)
        print("making the large photos...", flush=True)
        kinds = large_photos(work / "large")
        small = [
            Kind(f"{p.name} (small)", p, "image/jpeg" if p.suffix == ".jpg" else "image/png", 0)
            for p in data.probes
        ]
        for kind in small:
            with Image.open(kind.path) as image:
                kind.pixels = image.width * image.height
            kind.file_bytes = kind.path.stat().st_size
        server = Server(settings, work / "serve.log", "--max-upload-mb", "100")
        try:
            ready = server.wait_ready(600)
            rss = {"ready": server.rss(), "after_round": []}
            server.peak_rss = rss["ready"]
            for number in range(args.rounds):
                for kind in kinds + small:
                    post(server, token, kind)
                rss["after_round"].append(server.rss())
                print(f"round {number + 1}: RSS {rss['after_round'][-1] / MIB:.0f} MiB", flush=True)
            time.sleep(10)
            rss["settled"] = server.rss()
            rss["peak"] = server.peak_rss
        finally:
            server.stop()
    small_all = Kind("1-2 MP photos (all)", small[0].path, "", 0)
    for kind in small:
        small_all.seconds += kind.seconds
        small_all.named += kind.named
        for status, count in kind.statuses.items():
            small_all.statuses[status] = small_all.statuses.get(status, 0) + count
    small_all.pixels = int(statistics.mean(kind.pixels for kind in small))
    small_all.file_bytes = int(statistics.mean(kind.file_bytes for kind in small))
    section = report(kinds + [small_all], rss, args.rounds, ready)
    print(section)
    write_section(Path(args.output), section, BEGIN, END)


if __name__ == "__main__":
    main()
