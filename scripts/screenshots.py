#!/usr/bin/env python3
"""Screenshots of the window for docs/screenshots (README), under Xvfb with no window manager.

Each shot is a session file (the demo walkthrough, or a 12-layer random model) opened by the app in
a fresh home folder (no saved geometry, no autosave to recover), the window set to the screen's
size, then the screen grabbed with ImageMagick's `import`.

    scripts/screenshots.py [--build build] [--out docs/screenshots] [--only NAME...]

Needs Xvfb, xdotool and ImageMagick. The 12-layer model is made with
`circuitscope-cli make-random-model` (random weights: its figures mean nothing, it shows the layout).
"""

import argparse
import copy
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = ROOT / "resources" / "demo"


def demo_session():
    s = json.loads((DEMO / "ioi-walkthrough.circuitscope.json").read_text())
    # The walkthrough is a version-1 file (one target, no interventions): written as the current schema.
    if s["version"] == 1:
        s["version"] = 2
        s["objective"] = {"kind": "logit_diff", "targets": [s.pop("target")], "distractors": [s.pop("distractor")]}
    s["model"] = str(DEMO)
    for a in s["autoencoders"]:
        layer, path = a["spec"].split("=", 1)
        a["spec"] = f"{layer}={DEMO / path}"
    return s


def random_session(model_dir):
    s = demo_session()
    s["model"] = str(model_dir)
    s["autoencoders"] = []
    s["pins"] = []
    s["selected_node"] = "attn:9:9@13,1"
    return s


def shots(rand12):
    demo = demo_session()
    rand = random_session(rand12)
    out = {}

    s = copy.deepcopy(demo)
    s["ablations"] = ["attn:2:0@-1=0"]
    s["selected_node"] = "attn:1:0@13,9"
    s["view"]["inspector_tab"] = "write"
    out["demo-ablation"] = s

    s = copy.deepcopy(demo)
    s["trace"] = {"node": "attn:1:0@-1,9", "through": "v", "downstream": "attn:2:0@-1,1", "downstream_through": "q"}
    s["selected_node"] = "attn:0:1@9,3"
    s["token_of_interest"] = -1  # the trace's own: the key token, where the value's upstream nodes are
    out["demo-trace"] = s

    s = copy.deepcopy(demo)
    s["second_prompt"] = {"prompt": "When Mary and John went to the park, Mary handed a ball to", "targets": [" John"],
                          "distractors": [" Mary"]}
    s["view"]["grid_delta"] = True
    out["demo-two-prompts"] = s

    s = copy.deepcopy(demo)
    # The objective editor's chips: a second target that is not one token shows its tokenization (and
    # the run refuses it, saying so); the distractor is fine.
    s["objective"] = {"kind": "logit_diff", "targets": [" Mary", " Marzipan"], "distractors": [" John"]}
    out["demo-chips"] = s

    s = copy.deepcopy(rand)
    s["ablations"] = ["attn:5:3@-1=0", "mlp:7:100@*=0"]
    s["view"]["inspector_tab"] = "pairs"
    out["rand12-ablation"] = s

    s = copy.deepcopy(rand)
    s["ablations"] = ["attn:5:3@-1=0"]
    s["view"]["inspector_tab"] = "read"
    out["rand12-read"] = s

    s = copy.deepcopy(rand)
    # Of the same length: the Δ grid compares position by position (a longer first prompt has no Δ at
    # its last tokens).
    s["second_prompt"] = {"prompt": "When Mary and John went to the park, Mary handed a ball to", "targets": [" John"],
                          "distractors": [" Mary"]}
    s["view"]["grid_delta"] = True
    s["view"]["inspector_tab"] = "write"
    out["rand12-two-prompts"] = s
    return out


def grab(app, session_file, png, width, height, display, seconds):
    home = tempfile.mkdtemp(prefix="cs-shot-home-")
    env = dict(os.environ, DISPLAY=display, HOME=home, XDG_CONFIG_HOME=f"{home}/.config",
               XDG_DATA_HOME=f"{home}/.local/share", XDG_CACHE_HOME=f"{home}/.cache", QT_QPA_PLATFORM="xcb")
    proc = subprocess.Popen([str(app), str(session_file)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        window = None
        for _ in range(100):
            r = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", "Circuitscope"], env=env,
                               capture_output=True, text=True)
            if r.stdout.strip():
                window = r.stdout.split()[0]
                break
            time.sleep(0.2)
        if not window:
            sys.exit(f"{png.name}: the window did not appear")
        subprocess.run(["xdotool", "windowmove", window, "0", "0", "windowsize", window, str(width), str(height)], env=env, check=True)
        time.sleep(seconds)  # the session's run, the selected node's view, the layout settling
        subprocess.run(["import", "-window", "root", str(png)], env=env, check=True)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--seconds", type=float, default=8)
    a = ap.parse_args()
    build = pathlib.Path(a.build)
    app, cli = build / "app" / "circuitscope", build / "app" / "circuitscope-cli"
    work = pathlib.Path(tempfile.mkdtemp(prefix="cs-shots-"))
    rand12 = work / "rand12"
    subprocess.run([str(cli), "make-random-model", "--layers", "12", "--heads", "12", "--d-model", "192", "--n-ctx", "128",
                    "--vocab", "2474", "--tokenizer", str(DEMO), "--out", str(rand12)], check=True, stdout=subprocess.DEVNULL)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for n, (width, height) in enumerate([(1600, 1000), (1280, 800)]):
        display = f":{77 + n}"
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        try:
            for name, session in shots(rand12).items():
                if a.only and name not in a.only:
                    continue
                f = work / f"{name}.circuitscope.json"
                f.write_text(json.dumps(session, indent=2))
                png = out / f"{name}-{width}.png"
                grab(app, f, png, width, height, display, a.seconds)
                print(png)
        finally:
            xvfb.terminate()
            xvfb.wait(10)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
