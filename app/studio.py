"""The studio's Gradio Blocks: Arena, Leaderboard, Reward inspector, Training (admin).

Each tab is a module of ``app.tabs`` whose ``build(studio)`` lays out the tab, wires its clicks
and returns an ``app.tabs.common.Tab``: the handlers to run when the page loads, when the tab is
opened and on the refresh timer. Handlers are thin adapters: they read the inputs, call
``ArenaService`` (``app.service``), the inspector queries (``app.inspector``) or the
``JobManager`` (``app.jobs``), and return the updates a panel's view object produces. Per-user
state lives in ``gr.State`` (the current battle of each arena, the admin login); the voter is
the browser's ``qwenrl_voter`` cookie (set by the server for every client), else the Gradio
session. Prompts and model names are shown in text components, never as raw HTML.

    blocks = build_studio(Studio(service, jobs, auth))
"""

from __future__ import annotations

import gradio as gr

from .tabs import arena, inspector, leaderboard, training
from .tabs.common import NEXT_KEY, PRIVATE, VOTE_KEYS, Studio, Tab

CSS = """
.pixelated img { image-rendering: pixelated; object-fit: contain !important; }
/* leaderboard headers break between words, never inside one ("TrueSkil/l μ") */
#lb-table th, #lb-table th * { white-space: nowrap !important; word-break: keep-all !important; overflow-wrap: normal !important; }
/* the inspector's thumbnail labels (model and score) wrap rather than being cut */
#ri-gallery .caption-label { white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
  max-width: 100% !important; line-height: 1.2; }
/* the chosen vote stays marked after the reveal */
.vote-buttons button.voted { outline: 3px solid var(--color-accent); outline-offset: 2px; opacity: 1 !important; }
/* a phone (390 px wide): both images side by side and the vote buttons on the first screen */
@media (max-width: 600px) {
  .gradio-container { padding: 4px !important; }
  .studio-title h1 { font-size: 1.2em; margin: 0; }
  .studio-title p { display: none; }
  .battle-images { flex-wrap: nowrap !important; gap: 4px !important; }
  .battle-images > div { min-width: 0 !important; flex: 1 1 0 !important; }
  .battle-images .image-container, .battle-images .image-frame, .battle-images img { max-height: 150px !important; }
  .battle-images > div, .battle-images .block { height: auto !important; }
  .battle-images .image-container { height: 150px !important; }
  .vote-buttons { flex-wrap: wrap !important; gap: 4px !important; }
  .vote-buttons button { min-width: 45% !important; flex: 1 1 45% !important; }
}
"""

#: the page's script: keys a, b, t and x vote in the arena on screen, n opens its next battle
#: (not while typing in a text box)
KEYS_JS = """
<script>
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const target = event.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
  const keys = {%(keys)s};
  const key = event.key.toLowerCase();
  const selector = key in keys ? ".vote-key-" + keys[key] : (key === "%(next)s" ? ".next-battle" : null);
  if (!selector) return;
  const button = [...document.querySelectorAll(selector)].find((el) => el.offsetParent !== null && !el.disabled);
  if (button) { button.click(); event.preventDefault(); }
});
</script>
""" % {"keys": ", ".join(f'"{k}": {i}' for i, k in enumerate(VOTE_KEYS)), "next": NEXT_KEY}



def wire(tab: Tab, *, blocks: gr.Blocks, opened: gr.Tab | None, timer: gr.Timer) -> None:
    """Run a tab's loaders: when the page loads, when ``opened`` is selected, on each tick."""
    for loader in tab.on_page_load:
        blocks.load(loader.fn, loader.inputs or None, loader.outputs, **PRIVATE)
    for loader in tab.on_open:
        opened.select(loader.fn, loader.inputs or None, loader.outputs, **PRIVATE)
    for loader in tab.on_tick:
        timer.tick(loader.fn, loader.inputs or None, loader.outputs, **PRIVATE)


def build_studio(studio: Studio, *, refresh_s: float = 2.0) -> gr.Blocks:
    """The Blocks app; theme and CSS are given when it is mounted (``app.server``)."""
    with gr.Blocks(title="QwenRL Studio") as blocks:
        gr.Markdown("# QwenRL Studio\nVote for the better image; the names are revealed after your vote. "
                    "Keys: a, b, t (tie), x (both bad), n (next battle).", elem_classes="studio-title")
        tabs = []
        with gr.Tabs():
            for title, tab_id, module in (("Arena", "arena", arena), ("Leaderboard", "leaderboard", leaderboard),
                                          ("Reward inspector", "inspector", inspector), ("Training", "training", training)):
                with gr.Tab(title, id=tab_id) as opened:
                    tabs.append((module.build(studio), opened))
        timer = gr.Timer(refresh_s)
        for tab, opened in tabs:
            wire(tab, blocks=blocks, opened=opened, timer=timer)
    return blocks
