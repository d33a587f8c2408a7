"""The one place that turns ``"package.module:attr"`` into an object.

``ImportFromStringError.kind`` tells the failures apart, because each wants a different fix:

- ``format``: the text is not ``module:attr``;
- ``module-not-found``: no such module (a typo, a missing package, the wrong folder);
- ``import-error``: the module exists but raised while importing (including SystemExit);
- ``attribute``: the module has no such attribute;
- ``not-callable``: the attribute is neither a function nor a BaseWorker-like class;
- ``signature``: it is, but cortexflow cannot call it as ``f(data)`` or ``f(data, job)``
  (``process(self, job)`` for a class).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import json
import pkgutil
import sys
import traceback
from pathlib import Path
from typing import Any, Literal

from cortexflow.errors import CortexflowError

ImportKind = Literal[
    "format", "module-not-found", "import-error", "attribute", "not-callable", "signature"
]


class ImportFromStringError(CortexflowError):
    def __init__(self, kind: ImportKind, ref: str, message: str, hint: str | None = None) -> None:
        self.kind = kind
        self.ref = ref
        self.hint = hint
        super().__init__(message)


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def add_search_path(folder: Path) -> None:
    """Put ``folder`` (queues.yaml's folder) first on sys.path, once: handlers live beside it."""
    entry = str(folder.resolve())
    if sys.path[:1] != [entry]:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
        sys.path.insert(0, entry)


def import_from_string(ref: str, *, search_path: Path | None = None) -> Any:
    """Import ``module:attr.attr``; raise ImportFromStringError saying which step failed."""
    module_name, sep, attrs = ref.partition(":")
    if not sep or not module_name or not attrs:
        raise ImportFromStringError(
            "format", ref, f"{_q(ref)} is not an import path", 'write "package.module:function"'
        )
    if search_path is not None:
        add_search_path(search_path)
    module = _import_module(ref, module_name)
    obj: Any = module
    for i, attr in enumerate(attrs.split(".")):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            owner = module_name if i == 0 else f"{module_name}:{'.'.join(attrs.split('.')[:i])}"
            close = difflib.get_close_matches(attr, [n for n in dir(obj) if not n.startswith("_")])
            hint = f'did you mean "{close[0]}"?' if close else None
            raise ImportFromStringError(
                "attribute", ref, f"{owner} has no attribute {_q(attr)}", hint
            ) from None
        except Exception as exc:  # a module-level __getattr__ that raises
            raise ImportFromStringError(
                "import-error", ref, f"getting {_q(attr)} raised {type(exc).__name__}: {exc}"
            ) from None
    return obj


def resolve_handler(ref: str, *, search_path: Path | None = None) -> Any:
    """Import a handler: a callable, or a class with a ``process`` method (a BaseWorker)."""
    obj = import_from_string(ref, search_path=search_path)
    if inspect.isclass(obj):
        if not hasattr(obj, "process"):
            raise ImportFromStringError(
                "not-callable",
                ref,
                f"{ref} is a class without a process() method, not a BaseWorker",
                "subclass cortexflow's BaseWorker and define `async def process(self, job)`",
            )
        _check_signature(
            f"{ref}.process",
            obj.process,  # type: ignore[attr-defined]  # checked by hasattr above
            ("self", "job"),
            "process(self, job)",
            "a BaseWorker's method is `async def process(self, job)` (the data is `job.data`)",
        )
        return obj
    if not callable(obj):
        raise ImportFromStringError(
            "not-callable",
            ref,
            f"{ref} is {article(type(obj).__name__)}, not a function",
            "point handler at a function f(data) or f(data, job), or a BaseWorker subclass",
        )
    args = ("data", "job") if takes_job(obj) else ("data",)
    _check_signature(
        ref,
        obj,
        args,
        "f(data) or f(data, job)",
        "a handler takes the job's data, and optionally the job: `def handle(data)` or "
        "`def handle(data, job)`, async or not",
    )
    return obj


def article(noun: str) -> str:
    """``int`` -> ``an int``, ``str`` -> ``a str``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def takes_job(func: Any) -> bool:
    """Whether a handler is called as ``f(data, job)`` (two positional parameters or
    ``*args``) rather than ``f(data)``: the one rule for ``validate`` (resolve_handler), the
    worker (worker/handlers.py) and cortexflow.testing."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def _check_signature(name: str, func: Any, args: tuple[str, ...], form: str, hint: str) -> None:
    """ImportFromStringError("signature") unless ``func(*args)`` binds, the way the worker
    calls it. Only code written in Python is checked: a builtin (``os:getcwd`` as a stand-in
    handler in a test) or a callable whose signature cannot be read passes."""
    if inspect.isbuiltin(func) or inspect.ismethoddescriptor(func):
        return
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*args)
    except TypeError as exc:
        raise ImportFromStringError(
            "signature",
            name,
            f"{name}{signature} cannot be called as {form}: {exc}",
            hint + _defined_at(func),
        ) from None


def _defined_at(func: Any) -> str:
    try:
        file = inspect.getsourcefile(func)
        line = inspect.getsourcelines(func)[1]
    except (TypeError, OSError):
        return ""
    return f" (defined at {_short(file)}:{line})" if file else ""


def _import_module(ref: str, name: str) -> Any:
    # A handler module that prints while importing must not corrupt `validate --format json`.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ImportFromStringError(
                "module-not-found",
                ref,
                f"module {_q(exc.name)} not found",
                _not_found_hint(exc.name),
            ) from None
        raise _raised(ref, name, exc) from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: a user's module must never end validate
        raise _raised(ref, name, exc) from None


def _raised(ref: str, name: str, exc: BaseException) -> ImportFromStringError:
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" at {_short(exc.filename)}:{exc.lineno}"
    else:
        frames = [
            f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename
        ]
        if frames:
            where = f" at {_short(frames[-1].filename)}:{frames[-1].lineno}"
    detail = str(exc.msg if isinstance(exc, SyntaxError) else exc)
    text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return ImportFromStringError(
        "import-error",
        ref,
        f"module {_q(name)} raised while importing{where}: {text}",
        "fix the module so that importing it succeeds (run `python -c 'import "
        f"{name}'` to see the traceback)",
    )


def _short(filename: str) -> str:
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename


def _not_found_hint(missing: str) -> str:
    parent, _, leaf = missing.rpartition(".")
    if parent:
        parent_mod = sys.modules.get(parent)
        paths = getattr(parent_mod, "__path__", None)
        if paths is not None:
            names = [m.name for m in pkgutil.iter_modules(paths)]
            close = difflib.get_close_matches(leaf, names)
            if close:
                return f'did you mean "{parent}.{close[0]}"?'
    return (
        "check the spelling; is the package installed in this environment, or its folder "
        "beside queues.yaml?"
    )
