"""Discovering architecture plugins (entry points) and placing a state dict on one of them."""

from __future__ import annotations

import difflib
import functools
import sys
from dataclasses import dataclass, field

from .architecture import Architecture, StateDict, Weights
from .errors import AmbiguousModel, UnknownModel, first_line

GROUP = "esr.architectures"


@dataclass(frozen=True)
class PluginInfo:
    """One entry point of the group: where it comes from, and its error if it failed to load."""

    name: str
    value: str
    distribution: str
    version: str
    error: str | None = None


@dataclass(frozen=True)
class Match:
    """An architecture that a state dict fits, with the config read from it."""

    architecture: Architecture
    config: object
    state_dict: StateDict


@dataclass
class Registry:
    """The installed architectures, in a stable order, and the plugins that failed."""

    architectures: dict[str, Architecture] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)

    @classmethod
    def from_entry_points(cls, entry_points=None) -> Registry:
        """Load every entry point of the group, each inside its own try."""
        if entry_points is None:
            from importlib_metadata import entry_points as find

            entry_points = find(group=GROUP)
        registry = cls()
        for ep in sorted(entry_points, key=lambda ep: (_dist_name(ep), ep.name)):
            registry._load(ep)
        return registry

    @classmethod
    def of(cls, *architectures: Architecture) -> Registry:
        registry = cls()
        for arch in architectures:
            registry.architectures[arch.name] = arch
        return registry

    def _load(self, ep) -> None:
        dist = getattr(ep, "dist", None)
        info = dict(name=ep.name, value=ep.value, distribution=_dist_name(ep),
                    version=getattr(dist, "version", "") or "")
        try:
            arch = ep.load()
            if not isinstance(arch, Architecture):
                raise TypeError(f"{ep.value} is a {type(arch).__name__}, not an esr_cli.Architecture")
            if arch.name != ep.name:
                raise ValueError(f"entry point {ep.name!r} holds architecture {arch.name!r}")
            if arch.name in self.architectures:
                raise ValueError(f"architecture {arch.name!r} is already provided by another plugin")
            taken = {w.name for w in self.weights()}
            if clash := [w.name for w in arch.weights if w.name in taken]:
                raise ValueError(f"weights {', '.join(clash)} are already provided by another plugin")
        except Exception as e:  # a broken plugin never breaks the CLI
            message = f"{type(e).__name__}: {first_line(e)}" if str(e).strip() else type(e).__name__
            self.plugins.append(PluginInfo(**info, error=message))
            print(f"esr: warning: plugin {ep.name!r} ({info['distribution']}) skipped: {message}",
                  file=sys.stderr)
            return
        self.architectures[arch.name] = arch
        self.plugins.append(PluginInfo(**info))

    def get(self, name: str) -> Architecture:
        try:
            return self.architectures[name]
        except KeyError:
            raise UnknownModel(f"no architecture named {name!r}{_closest(name, self.architectures)}") from None

    def weights(self) -> list[Weights]:
        return [w for arch in self.architectures.values() for w in arch.weights]

    def find_weights(self, name: str) -> tuple[Architecture, Weights]:
        for arch in self.architectures.values():
            for w in arch.weights:
                if w.name == name:
                    return arch, w
        raise UnknownModel(f"no model named {name!r}{_closest(name, [w.name for w in self.weights()])}")

    def by_sha256(self, digest: str) -> tuple[Architecture, Weights] | None:
        """The installed zoo entry whose file has this sha256, if any."""
        digest = digest.lower()
        return next(((a, w) for a in self.architectures.values() for w in a.weights if w.sha256.lower() == digest),
                    None)

    def detect(self, state_dict: StateDict, scale: int | None = None, arch: str | None = None,
               source: str = "the weights") -> Match:
        """The one architecture (of all, or the one named `arch`) whose network, built from the config read off the
        shapes, has exactly these tensors. Several that fit raise AmbiguousModel: shapes cannot tell them apart."""
        candidates = [self.get(arch)] if arch else list(self.architectures.values())
        matches, reasons = [], []
        for candidate in candidates:
            result = try_architecture(candidate, state_dict, scale)
            if isinstance(result, Match):
                matches.append(result)
            else:
                reasons.append(result)
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise AmbiguousModel(source, [m.architecture.name for m in matches])
        if arch:
            raise UnknownModel(f"{source} does not fit architecture {arch!r}: {reasons[0][2]}")
        reasons.sort(key=lambda r: r[0])
        closest = "; ".join(f"{name}: {why}" for _, name, why in reasons[:3])
        raise UnknownModel(f"no installed architecture matches {source} (closest: {closest or 'none installed'})")


def try_architecture(arch: Architecture, state_dict: StateDict, scale: int | None):
    """A Match, or (distance, name, reason) saying why the state dict is not of this architecture."""
    import torch

    sd = arch.convert(state_dict) if arch.convert else state_dict
    missing = [k for k in arch.detect if k not in sd]
    if missing:
        return (2 + len(missing) / max(len(arch.detect), 1), arch.name, f"lacks {_few(missing)}")
    try:
        config = arch.read_config(sd, scale)
        with torch.device("meta"):
            expected = arch.build(config).state_dict()
    except Exception as e:
        return (1.5, arch.name, f"cannot read its config ({type(e).__name__}: {e})")
    absent = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    shapes = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if absent or extra or shapes:
        parts = [f"{label} {_few(keys)}" for label, keys in
                 (("missing", absent), ("unexpected", extra), ("wrong shape of", shapes)) if keys]
        return (1 + (len(absent) + len(extra) + len(shapes)) / (len(expected) + len(sd)), arch.name,
                f"{config}: " + ", ".join(parts))
    return Match(arch, config, sd)


def _few(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _closest(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.3)
    return f"; closest: {', '.join(close)}" if close else ""


def _dist_name(ep) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or getattr(dist, "metadata", {}).get("Name", "") or "?"


@functools.cache
def default_registry() -> Registry:
    """The registry of the installed plugins, loaded once per process."""
    return Registry.from_entry_points()
