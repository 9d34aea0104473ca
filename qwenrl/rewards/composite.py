"""Composite rewards: named judges with weights, read from YAML.

    reward = load_reward("training/configs/rewards/shapes_t2i.yaml")
    judgements = reward(samples)          # the same signature as every judge

A reward file::

    name: shapes_t2i
    task: t2i                 # t2i | edit: samples of the other task get None
    components:
      alignment: {judge: shapes_alignment, weight: 0.6}
      aesthetics: {judge: shapes_aesthetics, weight: 0.2}
      vlm: {judge: vlm_served, weight: 0.2, config: {model: ..., rubric: alignment}}
    category_weights:         # optional, per prompt family: overrides of some weights
      counting: {alignment: 0.8}

The total is the weighted mean of the components that gave a score; a component that
answers None is left out, the other weights are renormalised, and the rationale says so.
The judgement's ``parts`` hold each component's score under its name and the component's
own parts as ``component/part``. Relative paths in a component's ``config`` (``model_path``,
``rubric_dir``, a rubric file) are relative to the YAML file's folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .base import TASKS, Judge, Judgement, RewardConfigError, Sample, build_judge, judge_class
from .cache import RewardCache, judge_cached

TOP_KEYS = {"name", "task", "description", "components", "category_weights"}
COMPONENT_KEYS = {"judge", "weight", "config"}
PATH_OPTIONS = ("model_path", "rubric_dir", "rubric")


@dataclass
class Component:
    name: str
    judge: Judge
    weight: float


class CompositeReward(Judge):
    """Weighted mean of named judges, with per-family weights and a full rationale."""

    kind = "composite"

    def __init__(
        self,
        components: list[Component],
        task: str,
        name: str = "reward",
        category_weights: dict[str, dict[str, float]] | None = None,
        cache: RewardCache | None = None,
    ) -> None:
        if not components:
            raise RewardConfigError(f"reward {name!r} has no components; add at least one under `components:`")
        if task not in TASKS:
            raise RewardConfigError(f"reward {name!r}: task must be one of {TASKS}, got {task!r}")
        self.name = name
        self.task = task
        self.components = components
        self.category_weights = category_weights or {}
        self.cache = cache
        names = {c.name for c in components}
        for family, weights in self.category_weights.items():
            unknown = sorted(set(weights) - names)
            if unknown:
                raise RewardConfigError(
                    f"reward {name!r}: category_weights[{family!r}] names unknown component(s) {unknown}; components: {sorted(names)}"
                )
        self.config = {
            "kind": self.kind,
            "task": task,
            "components": {c.name: {"judge": c.judge.config, "weight": c.weight} for c in components},
            "category_weights": self.category_weights,
        }

    @property
    def metrics(self) -> dict[str, int]:
        """Each component's counters as ``component/counter``, and the cache's hits and misses."""
        out = {f"{c.name}/{k}": v for c in self.components for k, v in c.judge.metrics.items()}
        if self.cache is not None:
            out.update({f"cache/{k}": v for k, v in self.cache.stats().items()})
        return out

    def weights_for(self, family: str | None) -> dict[str, float]:
        weights = {c.name: c.weight for c in self.components}
        if family is not None:
            weights.update(self.category_weights.get(family, {}))
        return weights

    def __call__(self, samples: list[Sample]) -> list[Judgement]:
        mine = [i for i, s in enumerate(samples) if s.task == self.task]
        out: list[Judgement | None] = [None] * len(samples)
        for i, s in enumerate(samples):
            if s.task != self.task:
                out[i] = self.not_applicable(s, f"a {self.task} reward, given a {s.task} sample")
        batch = [samples[i] for i in mine]
        per_component = {c.name: judge_cached(c.judge, batch, self.cache) for c in self.components} if batch else {}
        for j, i in enumerate(mine):
            out[i] = self.combine(samples[i], {name: js[j] for name, js in per_component.items()})
        return out  # type: ignore[return-value]

    def combine(self, sample: Sample, judged: dict[str, Judgement]) -> Judgement:
        """The total for one sample from its components' judgements."""
        weights = self.weights_for(sample.family)
        family_note = (
            f"weights for family '{sample.family}'" if sample.family in self.category_weights else "default weights"
        )
        parts: dict[str, float] = {}
        used, left_out = [], []
        for c in self.components:
            j = judged[c.name]
            if j.score is None:
                left_out.append(c.name)
                continue
            parts[c.name] = j.score
            for sub, v in j.parts.items():
                parts[f"{c.name}/{sub}"] = v
            if weights[c.name] > 0:
                used.append(c.name)
        wsum = sum(weights[n] for n in used)
        total = sum(weights[n] * judged[n].score for n in used) / wsum if wsum > 0 else None  # type: ignore[operator]

        lines = []
        if total is None:
            lines.append(f"{self.name}: no score — no component with a positive weight gave one ({family_note}).")
        else:
            lines.append(
                f"{self.name} = {total:.3f}, weighted mean of {len(used)} of {len(self.components)} components ({family_note})."
            )
        for c in self.components:
            j, w = judged[c.name], weights[c.name]
            body = _indent(j.rationale)
            if j.score is None:
                lines.append(f"[{c.name}] no score, weight {w:g}, left out: {body}")
            else:
                share = f" (share {w / wsum:.2f})" if c.name in used and wsum > 0 else ""
                lines.append(f"[{c.name}] {j.score:.3f}, weight {w:g}{share}: {body}")
        if left_out and used:
            lines.append(
                f"Left out: {', '.join(left_out)}; weights renormalised over {', '.join(used)} (sum {wsum:g})."
            )
        return Judgement(total, "\n".join(lines), parts, self.name, transient=any(j.transient for j in judged.values()))

    def close(self) -> None:
        for c in self.components:
            close = getattr(c.judge, "close", None)
            if close is not None:
                close()


def _indent(text: str) -> str:
    return text.strip().replace("\n", "\n    ")


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RewardConfigError(f"{where}: weight must be a number, got {value!r}")
    if value < 0:
        raise RewardConfigError(f"{where}: weight {value} is negative; weights must be ≥ 0 (0 switches a component off)")
    return float(value)


def _resolve_paths(options: dict[str, Any], base: Path | None) -> dict[str, Any]:
    if base is None:
        return options
    out = dict(options)
    for key in PATH_OPTIONS:
        value = out.get(key)
        if not isinstance(value, str) or not value:
            continue
        p = Path(value).expanduser()
        if key == "rubric" and not (p.suffix or p.parent != Path(".")):
            continue  # a bundled rubric's name, not a path
        if not p.is_absolute():
            out[key] = str(base / p)
    return out


def load_reward(
    source: str | Path | dict[str, Any], cache: RewardCache | None | bool = True
) -> CompositeReward:
    """A ``CompositeReward`` from a YAML file or a dict; clear errors for bad configs.

    ``cache``: a ``RewardCache`` to share (e.g. one SQLite file for the arena and the
    trainer), True for a private in-memory one, None or False for none.
    """
    base: Path | None = None
    where = "reward config"
    if isinstance(source, (str, Path)):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise RewardConfigError(f"reward config {path} not found")
        try:
            cfg = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise RewardConfigError(f"{path}: invalid YAML ({exc})") from exc
        base = path.resolve().parent
    else:
        cfg = source
    if not isinstance(cfg, dict):
        raise RewardConfigError(f"{where}: expected a mapping with `task` and `components`")
    unknown = sorted(set(cfg) - TOP_KEYS)
    if unknown:
        raise RewardConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(TOP_KEYS)}")
    task = cfg.get("task")
    if task not in TASKS:
        raise RewardConfigError(f"{where}: `task` must be one of {TASKS}, got {task!r}")
    name = str(cfg.get("name") or (Path(where).stem if base else "reward"))
    comps = cfg.get("components")
    if not comps or not isinstance(comps, dict):
        raise RewardConfigError(f"{where}: `components` must be a non-empty mapping of name → {{judge, weight, config}}")

    components = []
    for cname, spec in comps.items():
        cwhere = f"{where}: component {cname!r}"
        if not isinstance(cname, str) or "/" in cname:
            raise RewardConfigError(f"{cwhere}: component names are strings without '/'")
        if not isinstance(spec, dict):
            raise RewardConfigError(f"{cwhere}: expected a mapping with `judge` and `weight`")
        bad = sorted(set(spec) - COMPONENT_KEYS)
        if bad:
            raise RewardConfigError(
                f"{cwhere}: unknown key(s) {bad}; allowed: {sorted(COMPONENT_KEYS)} (judge options go under `config:`)"
            )
        if "judge" not in spec:
            raise RewardConfigError(f"{cwhere}: missing `judge` (one of the judge kinds)")
        kind = spec["judge"]
        try:
            cls = judge_class(kind)
        except RewardConfigError as exc:
            raise RewardConfigError(f"{cwhere}: {exc}") from None
        if task not in cls.tasks:
            raise RewardConfigError(f"{cwhere}: judge {kind!r} scores {'/'.join(cls.tasks)} samples, but this reward is for {task}")
        weight = _weight(spec.get("weight", 1.0), cwhere)
        options = spec.get("config") or {}
        if not isinstance(options, dict):
            raise RewardConfigError(f"{cwhere}: `config` must be a mapping of judge options")
        try:
            judge = build_judge(kind, name=cname, config=_resolve_paths(options, base))
        except RewardConfigError as exc:
            raise RewardConfigError(f"{where}: {exc}") from None
        components.append(Component(cname, judge, weight))
    if not any(c.weight > 0 for c in components):
        raise RewardConfigError(f"{where}: every component has weight 0; give at least one a positive weight")

    category_weights: dict[str, dict[str, float]] = {}
    for family, weights in (cfg.get("category_weights") or {}).items():
        if not isinstance(weights, dict):
            raise RewardConfigError(f"{where}: category_weights[{family!r}] must map component names to weights")
        category_weights[str(family)] = {
            str(c): _weight(w, f"{where}: category_weights[{family!r}][{c!r}]") for c, w in weights.items()
        }

    if cache is True:
        cache = RewardCache(max_items=20_000)
    elif cache is False:
        cache = None
    return CompositeReward(components, task=task, name=name, category_weights=category_weights, cache=cache)


def reward_stats(judgements: list[Judgement], prefix: str = "rewards") -> dict[str, float]:
    """Means for logging: ``rewards/total/mean``, ``rewards/{part}/mean`` and the share of
    samples without a total (``rewards/total/frac_none``)."""
    out: dict[str, float] = {}
    totals = [j.score for j in judgements if j.score is not None]
    out[f"{prefix}/total/mean"] = sum(totals) / len(totals) if totals else float("nan")
    out[f"{prefix}/total/frac_none"] = 1 - len(totals) / len(judgements) if judgements else 0.0
    keys = sorted({k for j in judgements for k in j.parts})
    for k in keys:
        vals = [j.parts[k] for j in judgements if k in j.parts]
        out[f"{prefix}/{k}/mean"] = sum(vals) / len(vals)
    return out
