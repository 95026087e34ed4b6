"""Plugins: DSL primitives and tasks from the user's own package, without a fork of car-jax.

A plugin is a Python module that registers primitives (`car_jax.dsl.primitive`) and/or tasks
(`envs.register`) when it is imported. `load_plugins()` imports them from three sources, in order:

1. entry points of installed packages, groups `car_jax.primitives` then `car_jax.tasks`
   (an entry names a module, or a `module:function` that is called with no arguments);
2. the modules named in the environment variable `CAR_JAX_PLUGINS` (comma-separated);
3. the modules given to `load_plugins(modules)` (the CLI's repeatable `--plugin MODULE`).

Each source is loaded all-or-nothing: if it fails to import, registers a name that already exists,
or declares a primitive without a return type, a usable signature or a docstring, every primitive
and task it registered before failing is removed again, one line naming the plugin, the entry and
the problem is reported, and car-jax goes on with everything else.

`import car_jax` does not load plugins (importing stays cheap and free of third-party code); the
`car-jax` command loads them before any subcommand runs, and Python users call `load_plugins()`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

PRIMITIVES_GROUP = "car_jax.primitives"
TASKS_GROUP = "car_jax.tasks"
GROUPS = (PRIMITIVES_GROUP, TASKS_GROUP)
ENV_VAR = "CAR_JAX_PLUGINS"


@dataclass(frozen=True)
class PluginSource:
    """One thing to import: `target` ("module" or "module:attr"), found as `entry` of `plugin`."""

    plugin: str  # the distribution (entry points) or the module name (--plugin, CAR_JAX_PLUGINS)
    entry: str  # where it was named, e.g. "entry point car_jax.tasks:switchroom = switchroom.task"
    target: str


@dataclass(frozen=True)
class PluginResult:
    """What loading one source did: the names it registered, or why it was skipped."""

    source: PluginSource
    primitives: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    reference_dirs: tuple[Path, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the plugin loaded and its names are registered."""
        return self.error is None

    def message(self) -> str:
        """One line: the plugin, the entry, and what is wrong (or what it registered)."""
        where = f"plugin {self.source.plugin!r} ({self.source.entry})"
        if self.error is not None:
            return f"car-jax: {where} skipped: {self.error}"
        names = [f"primitive {n}" for n in self.primitives] + [f"task {t}" for t in self.tasks]
        return f"car-jax: {where} loaded: {', '.join(names) or 'nothing new registered'}"


# Results of the sources loaded so far, by (entry, target): loading is idempotent.
_LOADED: dict[tuple[str, str], PluginResult] = {}
# Who registered each name, for "already registered by ..." messages.
_OWNERS: dict[tuple[str, str], str] = {}
# Folders of reference specs (`<TaskId>.<mode>.py`) declared by loaded plugins, for the replay VLM.
_REFERENCE_DIRS: list[Path] = []


# --- discovery ------------------------------------------------------------------------------------
def discover(
    modules: Iterable[str] = (), *, entry_points: bool = True, environ: bool = True
) -> list[PluginSource]:
    """The sources `load_plugins` would load, in order (nothing is imported)."""
    sources: list[PluginSource] = []
    if entry_points:
        for group in GROUPS:
            for ep in importlib.metadata.entry_points(group=group):
                dist = getattr(ep, "dist", None)
                plugin = dist.name if dist is not None else ep.name
                sources.append(
                    PluginSource(plugin, f"entry point {group}:{ep.name} = {ep.value}", ep.value)
                )
    if environ:
        for name in _split(os.environ.get(ENV_VAR, "")):
            sources.append(PluginSource(name, f"{ENV_VAR}={name}", name))
    for name in modules:
        for part in _split(name):
            sources.append(PluginSource(part, f"--plugin {part}", part))
    return sources


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]


# --- loading --------------------------------------------------------------------------------------
def load_plugins(
    modules: Iterable[str] = (),
    *,
    entry_points: bool = True,
    environ: bool = True,
    quiet: bool = False,
) -> list[PluginResult]:
    """Load every plugin (entry points, `CAR_JAX_PLUGINS`, then `modules`); skip broken ones.

    Args:
      modules: module names to import as plugins (as the CLI's `--plugin`); commas split too.
      entry_points: also load installed packages' `car_jax.primitives` / `car_jax.tasks` entries.
      environ: also load the modules named in `$CAR_JAX_PLUGINS`.
      quiet: do not print the one-line message of each skipped plugin on stderr.

    Returns:
      One result per source; `.ok` False for skipped ones, whose `.error` says why. A source
      loaded earlier in this process is not imported again.
    """
    sources = discover(modules, entry_points=entry_points, environ=environ)
    if not sources:
        return []
    _import_builtins()
    results = []
    for source in sources:
        key = (source.entry, source.target)
        done = _LOADED.get(key)
        if done is None or not done.ok:
            done = load_source(source)
            if done.ok:
                _LOADED[key] = done
            elif not quiet:
                print(done.message(), file=sys.stderr)
        results.append(done)
    return results


def reference_dirs() -> list[Path]:
    """Folders of reference specs declared by loaded plugins (module attribute `REFERENCE_DIR`)."""
    return list(_REFERENCE_DIRS)


def _import_builtins() -> None:
    """Register the built-in primitives and tasks first, so a plugin cannot take their names."""
    import car_jax.dsl  # noqa: F401
    import envs

    if not _OWNERS:
        from car_jax.dsl.registry import REGISTRY

        _OWNERS.update({("primitive", n): "car-jax (built in)" for n in REGISTRY})
        _OWNERS.update({("task", t): "car-jax (built in)" for t in envs.registered()})


def load_source(source: PluginSource) -> PluginResult:
    """Import one source all-or-nothing; on failure, remove whatever it registered."""
    import envs
    from car_jax.dsl.registry import REGISTRY, RegistrationError, unregister

    prims_before, tasks_before = set(REGISTRY), set(envs.registered())
    modules_before = set(sys.modules)

    def added() -> tuple[tuple[str, ...], tuple[str, ...]]:
        prims = tuple(n for n in REGISTRY if n not in prims_before)
        return prims, tuple(t for t in envs.registered() if t not in tasks_before)

    def rollback(error: str) -> PluginResult:
        prims, tasks = added()
        for name in prims:
            unregister(name)
        for task_id in tasks:
            envs.registry.unregister(task_id)
        # Forget the plugin's own modules imported on the way (e.g. a submodule that registered
        # primitives before a sibling failed), so a later import runs them again instead of
        # finding them loaded with their names gone. Other packages' modules are left alone.
        package = source.target.split(":")[0].strip().split(".")[0]
        for name in set(sys.modules) - modules_before:
            if name.split(".")[0] == package and package not in ("car_jax", "envs"):
                del sys.modules[name]
        return PluginResult(source, error=error)

    try:
        obj = _import_target(source.target)
        if callable(obj) and not isinstance(obj, ModuleType | type):
            obj()
    except RegistrationError as err:
        return rollback(_owned(str(err), "primitive", err.name) + _where(err))
    except envs.registry.DuplicateTaskError as err:
        return rollback(_owned(str(err), "task", err.task_id) + _where(err))
    except ModuleNotFoundError as err:
        missing = err.name or "?"
        module = source.target.split(":")[0].strip()
        if module == missing or module.startswith(missing + "."):
            return rollback(
                f"cannot import {source.target!r}: no module named {missing!r} on sys.path"
            )
        return rollback(
            f"cannot import {source.target!r}: it imports {missing!r}, which is not installed"
            + _where(err)
        )
    except SyntaxError as err:
        return rollback(f"SyntaxError: {err.msg}{_where(err)}")
    except (Exception, SystemExit) as err:  # a broken plugin must not stop car-jax
        return rollback(f"{type(err).__name__}: {_first_line(err)}{_where(err)}")

    prims, tasks = added()
    for task_id in tasks:
        _guard_factory(task_id, source)
    for name in prims:
        _OWNERS[("primitive", name)] = f"plugin {source.plugin!r}"
    for task_id in tasks:
        _OWNERS[("task", task_id)] = f"plugin {source.plugin!r}"
    refs = _reference_dir(obj)
    if refs is not None and refs not in _REFERENCE_DIRS:
        _REFERENCE_DIRS.append(refs)
    return PluginResult(source, prims, tasks, (refs,) if refs else ())


def _import_target(target: str):
    """The module (or `module:attr` object) named by an entry point value or a --plugin name."""
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name.strip())
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    return obj


def _reference_dir(obj) -> Path | None:
    module = obj if isinstance(obj, ModuleType) else inspect.getmodule(obj)
    path = getattr(module, "REFERENCE_DIR", None)
    return Path(path) if path is not None and Path(path).is_dir() else None


def _guard_factory(task_id: str, source: PluginSource) -> None:
    """Wrap a plugin task's factory: a failure to build becomes a TaskError naming the plugin."""
    import envs

    factory = envs.registry.factory(task_id)

    def build() -> envs.Task:
        try:
            task = factory()
        except envs.TaskError:
            raise
        except Exception as err:
            raise envs.TaskError(
                f"task {task_id!r} from plugin {source.plugin!r} failed to build: "
                f"{type(err).__name__}: {_first_line(err)}{_where(err)}"
            ) from err
        if not isinstance(task, envs.Task):
            raise envs.TaskError(
                f"task {task_id!r} from plugin {source.plugin!r}: the factory returned "
                f"{type(task).__name__}, not an envs.Task"
            )
        if task.id != task_id:
            raise envs.TaskError(
                f"task {task_id!r} from plugin {source.plugin!r}: the built task says its id is "
                f"{task.id!r}; set `id = {task_id!r}`"
            )
        return task

    build.__doc__ = getattr(factory, "__doc__", None)
    envs.registry.unregister(task_id)
    envs.registry.register(task_id, build)


def _owned(message: str, kind: str, name: str | None) -> str:
    owner = _OWNERS.get((kind, name or ""))
    if owner and "already registered" in message:
        return f"{message} by {owner}"
    return message


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "(no message)"


def _where(err: BaseException) -> str:
    """` (at file:line)` of the innermost frame in the plugin's own code, where known."""
    frames = traceback.extract_tb(err.__traceback__)
    if isinstance(err, SyntaxError) and err.filename:
        return f" (at {_short(err.filename)}:{err.lineno})"
    ours = (Path(__file__).resolve().parent, Path(_envs_dir()))
    stdlib = Path(importlib.__file__).resolve().parent.parent
    for frame in reversed(frames):
        if frame.filename.startswith("<"):
            continue
        path = Path(frame.filename).resolve()
        if any(d in path.parents for d in ours):
            continue  # car-jax and envs are not the plugin
        if stdlib in path.parents and "site-packages" not in path.parts:
            continue  # nor is the standard library (importlib)
        return f" (at {_short(frame.filename)}:{frame.lineno})"
    return ""


def _envs_dir() -> str:
    spec = importlib.util.find_spec("envs")
    return str(Path(spec.origin).resolve().parent) if spec and spec.origin else "/nonexistent"


def _short(filename: str) -> str:
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return "/".join(path.parts[-2:])


def loaded() -> list[PluginResult]:
    """The plugins loaded so far in this process."""
    return list(_LOADED.values())
