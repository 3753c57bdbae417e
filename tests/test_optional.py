"""The optional integrations stay optional: the core imports none of their packages."""

from __future__ import annotations

import textwrap

import pytest

from .helpers import run_python

BLOCKER = """
import sys

class Blocker:
    # Make opentelemetry and sentry_sdk look not installed.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("opentelemetry", "sentry_sdk"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""


def _run(code: str) -> str:
    out = run_python("-c", textwrap.dedent(code))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_async_trace_imports_no_optional_package() -> None:
    """``import async_trace`` (and its logging module) loads neither opentelemetry nor sentry_sdk."""
    out = _run(
        """
        import sys
        import async_trace, async_trace.logging
        loaded = sorted({m.split(".")[0] for m in sys.modules} & {"opentelemetry", "sentry_sdk"})
        print(loaded)
        """
    )
    assert out == "[]\n"


MESSAGES = {
    "otel": (
        "async_trace.otel needs the OpenTelemetry SDK (opentelemetry-api and opentelemetry-sdk >= 1.20): "
        "pip install '.[otel]' in a clone of async-trace, or pip install 'opentelemetry-sdk>=1.20' "
        "(not 'async-trace[otel]': that is an unrelated project on the package index); "
    ),
    "sentry": (
        "async_trace.sentry needs sentry-sdk 2: pip install '.[sentry]' in a clone of async-trace, or "
        "pip install 'sentry-sdk>=2' (not 'async-trace[sentry]': that is an unrelated project on the package "
        "index); "
    ),
}


@pytest.mark.parametrize(("module", "extra"), [("otel", ".[otel]"), ("sentry", ".[sentry]")])
def test_without_the_package_the_module_names_the_extra(module: str, extra: str) -> None:
    """With the package missing, the core works and the integration's ImportError names the extra."""
    out = _run(
        BLOCKER
        + f"""
import asyncio
import async_trace

async def child():
    return async_trace.collect_async_trace()["frames"][1]["name"]

async def main():
    return await asyncio.create_task(child())

print(asyncio.run(main()))
try:
    import async_trace.{module}
except ImportError as exc:
    print(type(exc).__name__, str(exc))
else:
    print("imported")
"""
    )
    first, second = out.splitlines()
    assert first == "main"
    assert second.startswith(f"ImportError async_trace.{module} needs ")
    assert f"pip install '{extra}' in a clone of async-trace" in second
    assert second.startswith(f"ImportError {MESSAGES[module]}")
