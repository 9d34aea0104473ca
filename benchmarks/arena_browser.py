"""The vote loop as a person meets it: vote → reveal → next battle in Chromium, pairs and 4 images.

Starts ``qwenrl studio`` on four tiny checkpoints (``benchmarks/arena_load.py``'s server), opens
it in Debian's Chromium through Playwright, and for ``--cycles`` battles of each kind measures,
inside the page (``performance.now()``, polled every animation frame):

- vote → reveal: from the click on the vote button until the names are shown;
- next battle: from the click on *Next battle* until the new battle's images are in the page.

The 4-image battle marks its best image before the measured vote (the mark is the voter's own
step, like choosing which pair button to press). Target: the cycle's p95 under 300 ms.
Figures go to ``benchmarks/results/arena_browser.json`` and ``arena_browser.md``.

Run: ``flock /tmp/qwenrl-cpu.lock python benchmarks/arena_browser.py`` (timed: take the CPU lock).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.arena_load import Server, tiny_models  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

# Clicks the vote button, waits for the reveal; clicks Next, waits until the reveal is cleared
# (it is cleared in the same update that brings the new images) and the image has loaded (the
# next battle may show the very same picture, so its address is no signal). Returns ms; a step
# that does not finish in 20 s fails the run rather than waiting for ever.
CYCLE = """
async ({vote, reveal, next, image}) => {
  const until = (ok, what) => new Promise((resolve, reject) => {
    const start = performance.now();
    const poll = () => {
      if (ok()) return resolve(performance.now());
      if (performance.now() - start > 20000) return reject(new Error('no ' + what + ' after 20 s'));
      requestAnimationFrame(poll);
    };
    poll();
  });
  const revealed = () => (document.querySelector(reveal).value || '').includes(' was ');
  const img = () => document.querySelector(image);
  const t0 = performance.now();
  document.querySelector(vote).click();
  const t1 = await until(revealed, 'reveal');
  document.querySelector(next).click();
  const t2 = await until(() => !revealed() && img() && img().complete && img().naturalWidth > 0, 'next battle');
  return [t1 - t0, t2 - t1];
}
"""


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1)


def measure(page, kind: str, cycles: int) -> dict:
    from playwright.sync_api import expect

    pair = kind == "pairs"
    sel = ({"vote": "#t2i-vote-0", "reveal": "#t2i-reveal textarea", "next": "#t2i-next", "image": "#t2i-image-a img"}
           if pair else
           {"vote": "#kway-vote", "reveal": "#kway-reveal textarea", "next": "#kway-next", "image": "#kway-images img"})
    page.get_by_role("tab", name="Text to image" if pair else "4 at once").click()
    reveal_ms, next_ms = [], []
    for _ in range(cycles + 3):  # the first three warm the caches and are not counted
        expect(page.locator(sel["image"])).to_be_visible(timeout=60_000)
        if not pair:
            page.locator("#kway-best label", has_text="1").click()
        expect(page.locator(sel["vote"])).to_be_enabled(timeout=30_000)
        a, b = page.evaluate(CYCLE, sel)
        reveal_ms.append(a)
        next_ms.append(b)
    reveal_ms, next_ms = reveal_ms[3:], next_ms[3:]
    cycle = [a + b for a, b in zip(reveal_ms, next_ms)]
    return {"cycles": cycles, "vote_to_reveal_ms": {"p50": pct(reveal_ms, 50), "p95": pct(reveal_ms, 95)},
            "next_battle_ms": {"p50": pct(next_ms, 50), "p95": pct(next_ms, 95)},
            "cycle_ms": {"p50": pct(cycle, 50), "p95": pct(cycle, 95), "max": round(max(cycle), 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    import socket

    from playwright.sync_api import sync_playwright

    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    report: dict = {"machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = tiny_models(root / "models")
        (root / "ws").mkdir()
        server = Server(root / "ws" / "workspace", models, port, rate=1000, burst=1000, pool_size=8,
                        extra=("--min-vote-seconds", "0", "--no-live-prompts"))
        try:
            server.start()
            import httpx

            deadline = time.time() + 600
            while httpx.get(f"{server.url}/api/v1/health").json()["models"]["t2i"] < 4:
                if time.time() > deadline:
                    raise SystemExit("the studio never had four models with gallery images")
                time.sleep(1)
            report["uptime_before"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                page = browser.new_page(viewport={"width": 1300, "height": 1000})
                page.goto(server.url + "/")
                report["pairs"] = measure(page, "pairs", args.cycles)
                report["four_images"] = measure(page, "four", args.cycles)
                browser.close()
            report["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        finally:
            server.stop()
    report["target_cycle_p95_ms"] = 300
    report["met"] = {kind: report[kind]["cycle_ms"]["p95"] < 300 for kind in ("pairs", "four_images")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "arena_browser.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Vote → reveal → next battle in Chromium", "",
             f"`uptime` before: `{report['uptime_before']}`; after: `{report['uptime_after']}`. "
             f"{args.cycles} cycles each (after 3 not counted), studio on 4 tiny checkpoints on this machine.", "",
             "| battle | vote → reveal p50 / p95 (ms) | next battle p50 / p95 (ms) | cycle p50 / p95 (ms) |",
             "|:---|---:|---:|---:|"]
    for kind, label in (("pairs", "2 images"), ("four_images", "4 images")):
        r = report[kind]
        lines.append(f"| {label} | {r['vote_to_reveal_ms']['p50']} / {r['vote_to_reveal_ms']['p95']} | "
                     f"{r['next_battle_ms']['p50']} / {r['next_battle_ms']['p95']} | "
                     f"{r['cycle_ms']['p50']} / **{r['cycle_ms']['p95']}** |")
    lines += ["", "Target: cycle p95 < 300 ms. Met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in report["met"].items()) + "."]
    (args.out / "arena_browser.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
