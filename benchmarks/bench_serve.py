"""``ailut serve`` on a 24-megapixel photo: time to result, downloads, the server's memory.

Starts ``ailut serve`` in its own process with a model (default: the authors' FiveK sRGB
``.pth`` in ../shared/official), makes a 6000x4000 JPEG from the authors' photo, and over
HTTP on 127.0.0.1 measures, as the page would see them:

- time to result: from the start of the upload until the photo's status says done
  (upload, header check, decode, enhance at full resolution), median of ``--repeats``;
- each download: previews, the full-size PNG at 100 % (rendered already) and at another
  strength (a new render), 8 and 16 bit, the ``.cube`` at 33 and 65, a zip;
- the server's resident memory after start-up and at its peak (VmHWM).

``--screenshot PATH`` also saves a screenshot of the page with the authors' photo, taken by
Debian's chromium through playwright (the one in docs/).

    python benchmarks/bench_serve.py [--checkpoint MODEL] [--repeats 3]
        [--screenshot docs/ailut-serve.png]
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = REPO.parent / "shared" / "official"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mib(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(line.split()[1]) / 1024
    return out


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=600) as response:
        return response.read()


def _timed(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    size = len(_get(url))
    return (time.perf_counter() - t0) * 1e3, size


def _upload(base: str, name: str, data: bytes) -> str:
    request = urllib.request.Request(f"{base}/api/photos?name={name}", data=data, method="POST")
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())["id"]


def _wait(base: str, photo_id: str) -> dict:
    while True:
        status = json.loads(_get(f"{base}/api/photos/{photo_id}"))
        if status["state"] in ("done", "error"):
            return status
        time.sleep(0.05)


def make_photo(path: Path, width: int, height: int) -> bytes:
    from PIL import Image

    with Image.open(OFFICIAL / "a4739.jpg") as im:
        im.convert("RGB").resize((width, height), Image.BICUBIC).save(path, quality=95)
    return path.read_bytes()


def screenshot(base: str, target: Path) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.goto(base)
        page.set_input_files("#files", str(OFFICIAL / "a4739.jpg"))
        page.wait_for_selector(".card[data-state=done]", timeout=600_000)
        page.eval_on_selector(
            ".card .split", "el => { el.value = 45; el.dispatchEvent(new Event('input')); }"
        )
        page.wait_for_function(
            "[...document.querySelectorAll('.card img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        png = page.screenshot()
        browser.close()
    with Image.open(io.BytesIO(png)) as im:
        small = im.convert("RGB").resize((880, round(880 * im.height / im.width)), Image.LANCZOS)
        small.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    print(f"screenshot: {target} ({target.stat().st_size / 1024:.0f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(OFFICIAL / "AiLUT-FiveK-sRGB.pth"))
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve.json"))
    args = parser.parse_args()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "ailut_jax.cli", "serve", "--checkpoint", args.checkpoint,
         "--port", str(port)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in server.stderr:
            if "open http://" in line:
                break
        else:
            raise SystemExit("ailut serve did not start")
        startup_s = time.perf_counter() - t0
        idle = _memory_mib(server.pid)
        with tempfile.TemporaryDirectory() as tmp:
            data = make_photo(Path(tmp) / "big.jpg", args.width, args.height)
        rows, results = [], []
        for k in range(args.repeats):
            t1 = time.perf_counter()
            photo_id = _upload(base, f"big{k}.jpg", data)
            status = _wait(base, photo_id)
            results.append((time.perf_counter() - t1) * 1e3)
            assert status["state"] == "done", status
        rows.append({"what": "time to result (upload to done)", "ms": statistics.median(results),
                     "runs_ms": results, "bytes": len(data)})  # fmt: skip
        photo = f"{base}/api/photos/{photo_id}"
        downloads = [
            ("input preview (JPEG)", f"{photo}/input.jpg"),
            ("output preview at 60 % (JPEG)", f"{photo}/output.jpg?strength=60"),
            ("PNG 8 bit at 100 % (cached render)", f"{photo}/image.png?strength=100"),
            ("PNG 16 bit at 100 % (cached render)", f"{photo}/image.png?strength=100&bits=16"),
            ("PNG 8 bit at 60 % (new render)", f"{photo}/image.png?strength=60"),
            (".cube 33 at 60 %", f"{photo}/lut.cube?strength=60&size=33"),
            (".cube 65 at 60 %", f"{photo}/lut.cube?strength=60&size=65"),
            ("zip of 2 photos (PNG 8 bit + .cube 33, 80 %)",
             f"{base}/api/zip?ids={photo_id},{photo_id}&strength=80"),
        ]  # fmt: skip
        for what, url in downloads:
            ms, size = _timed(url)
            rows.append({"what": what, "ms": ms, "bytes": size})
        memory = _memory_mib(server.pid)
        if args.screenshot is not None:
            screenshot(base, args.screenshot)
    finally:
        server.terminate()
        server.wait(timeout=60)

    mp = args.width * args.height / 1e6
    print(
        f"ailut serve, {args.width}x{args.height} ({mp:.0f} MP) JPEG, "
        f"server start {startup_s:.1f} s"
    )
    print(f"{'what':52s} {'ms':>9s} {'MB':>8s}")
    for row in rows:
        print(f"{row['what']:52s} {row['ms']:9.0f} {row['bytes'] / 1e6:8.1f}")
    print(f"server memory: {idle['VmRSS']:.0f} MiB after start-up, peak {memory['VmHWM']:.0f} MiB")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import save_results

    out = save_results(args.out, rows, width=args.width, height=args.height,
                       startup_s=startup_s, memory_mib={"idle": idle, "end": memory})  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
