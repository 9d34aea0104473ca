"""The studio's tabs, one module each, all of one shape.

Each module's ``build(studio)`` lays out its tab's components inside the open ``gr.Tab``, wires
the events a click sends, and returns a :class:`app.tabs.common.Tab`: the handlers the page runs
by itself (when it loads, when the tab is opened, on the refresh timer), each a
:class:`app.tabs.common.Loader` of (handler, inputs, outputs). ``app.studio.build_studio`` puts
the tabs side by side and wires those loaders. Within a tab, each panel is a view object (a
dataclass of its components) whose methods produce the panel's updates, so that a handler
returns ``{component: update}`` built in one place.

* ``arena`` — the pairwise arenas (text to image, editing), with the K-image (``kway``) and the
  named side-by-side (``named``) arenas as sub-tabs, and the models table;
* ``leaderboard`` — the boards, their notes, charts and downloads;
* ``inspector`` — the reward inspector: samples, side by side, agreement;
* ``training`` — the admin's jobs.
"""
