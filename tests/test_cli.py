"""The command line's plugin hook: `eval` comes from the evals entry point, and the
built-in commands never load a plugin (so `serve` never imports the eval harness)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from service.cli import BUILTIN_COMMANDS, COMMANDS_GROUP, build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _declared_plugins() -> list[EntryPoint]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"][COMMANDS_GROUP]
    return [EntryPoint(name=n, value=v, group=COMMANDS_GROUP) for n, v in declared.items()]


def _commands(parser: object) -> list[str]:
    sub = next(a for a in parser._actions if a.dest == "command")  # type: ignore[attr-defined]
    return list(sub.choices)


def test_builtin_commands_are_the_parsers_own() -> None:
    assert _commands(build_parser([])) == list(BUILTIN_COMMANDS)


def test_eval_is_the_declared_plugin_and_parses_as_before() -> None:
    from evals.cli import run_eval

    plugins = _declared_plugins()
    assert [p.name for p in plugins] == ["eval"]
    parser = build_parser(plugins)
    assert _commands(parser) == [*BUILTIN_COMMANDS, "eval"]
    args = parser.parse_args(["eval", "--k", "3", "--models", "random"])
    assert args.func is run_eval and (args.k, args.models) == (3, "random")


def test_builtin_commands_load_no_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    broken = [EntryPoint(name="broken", value="json:no_such_function", group=COMMANDS_GROUP)]
    with pytest.raises(SystemExit) as done:
        main(["worker", "--help"], plugins=broken)
    assert done.value.code == 0 and "--once" in capsys.readouterr().out
    with pytest.raises(AttributeError):  # any other word loads the plugins
        main(["broken"], plugins=broken)


def test_a_plugin_whose_package_is_not_installed_is_no_command() -> None:
    absent = [EntryPoint(name="gone", value="no_such_package_xyz.cli:add", group=COMMANDS_GROUP)]
    assert _commands(build_parser(absent)) == list(BUILTIN_COMMANDS)
    broken = [EntryPoint(name="bad", value="evals.no_such_module:add", group=COMMANDS_GROUP)]
    with pytest.raises(ModuleNotFoundError):  # a broken plugin still fails loudly
        build_parser(broken)


def test_the_service_imports_neither_evals_nor_its_libraries() -> None:
    code = ("import sys, service.cli, service.main, service.demo; "
            "print(sorted(m for m in ('evals', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
