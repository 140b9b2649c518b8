"""The registry: names, fallbacks, aliases, freezing, task names, and module discovery."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.core.registry import Registry, Spec
from tasks.errors import DuplicateName, RegistrationError, RegistryFrozen, UnknownName


def grades(course: str) -> list[Any]:
    return []


def other_grades(course: str, mongodb: Any) -> list[Any]:
    return []


def generic_grades(course: str) -> list[Any]:
    return []


def spec(func: Callable[..., Any], *names: str, kind: str = "query", fallback: bool = False) -> Spec:
    return Spec(kind, names or (func.__name__,), func, "grading", fallback=fallback)


def definition_line(func: Callable[..., Any]) -> str:
    """``file:line`` of ``def func`` in this file, found by reading the source."""
    lines = Path(__file__).read_text().splitlines()
    number = next(n for n, line in enumerate(lines, 1) if line.startswith(f"def {func.__name__}("))
    return f"{__file__}:{number}"


# Names and fallbacks ----------------------------------------------------------------
def test_a_name_defined_twice_is_refused_naming_both_definitions() -> None:
    registry = Registry()
    registry.add(spec(grades, "grades"))

    with pytest.raises(DuplicateName) as error:
        registry.add(spec(other_grades, "grades"))

    assert definition_line(grades) in str(error.value)
    assert definition_line(other_grades) in str(error.value)


@pytest.mark.parametrize("fallback_first", [True, False])
def test_a_fallback_yields_to_a_real_definition_whichever_comes_first(fallback_first: bool) -> None:
    registry = Registry()
    definitions = [spec(generic_grades, "grades", fallback=True), spec(grades, "grades")]

    for definition in definitions if fallback_first else reversed(definitions):
        registry.add(definition)

    assert registry.get("query", "grades").func is grades
    assert registry.specs("query") == [definitions[1]]


def test_two_fallbacks_with_the_same_name_are_refused() -> None:
    registry = Registry()
    registry.add(spec(generic_grades, "grades", fallback=True))

    with pytest.raises(DuplicateName, match="defined twice"):
        registry.add(spec(grades, "grades", fallback=True))


def test_adding_the_same_function_again_is_harmless() -> None:
    registry = Registry()
    registry.add(spec(grades))
    registry.add(spec(grades))

    assert [s.func for s in registry.specs("query")] == [grades]


def test_aliases_share_one_spec() -> None:
    registry = Registry()
    registry.add(spec(grades, "grades", "get_grades", "course.grades"))

    assert registry.names("query") == ["course.grades", "get_grades", "grades"]
    assert registry.get("query", "get_grades") is registry.get("query", "grades")
    assert registry.get("query", "course.grades").name == "grades"


def test_specs_lists_an_aliased_function_once() -> None:
    registry = Registry()
    aliased = spec(grades, "grades", "get_grades")
    registry.add(aliased)

    assert registry.specs("query") == [aliased]
    assert list(registry) == [aliased]


def test_a_view_and_a_query_may_share_a_name() -> None:
    registry = Registry()
    registry.add(spec(grades, "grades", kind="query"))
    registry.add(spec(other_grades, "grades", kind="view"))

    assert registry.get("query", "grades").func is grades
    assert registry.get("view", "grades").func is other_grades


def test_an_unknown_name_points_to_the_schema() -> None:
    registry = Registry()
    registry.add(spec(grades, "grades", kind="query"))

    with pytest.raises(UnknownName, match=r"no view named 'grades'; see /schema") as error:
        registry.get("view", "grades")

    assert (error.value.kind, error.value.name) == ("view", "grades")


def test_a_frozen_registry_refuses_new_definitions() -> None:
    registry = Registry()
    registry.add(spec(grades))
    registry.freeze()

    with pytest.raises(RegistryFrozen, match="registry is finalized"):
        registry.add(spec(other_grades))
    assert registry.get("query", "grades").func is grades


# What a spec says about itself -------------------------------------------------------
def test_the_category_is_the_caller_supplied_parameters() -> None:
    def per_student(course: str, mongodb: Any, user: str, cache: Any, params: Any) -> None: ...

    def overall(mongodb: Any, fs: Any) -> None: ...

    assert spec(per_student).category == ["course", "user"]
    assert spec(overall).category == []
    assert spec(overall).describe()["category"] == "global"
    assert spec(per_student).describe()["category"] == "per course, user"


def test_the_original_description_and_category_replace_the_docstring_and_the_derived_category() -> None:
    def per_student(course: str, user: str) -> None:
        """The docstring."""

    described = Spec(
        "query", ("g",), per_student, "grading", options={"description": "  Told.\n  Twice.", "category": "per learner"}
    )
    plain = spec(per_student)

    assert described.doc == "Told.\nTwice."
    assert described.describe()["doc"] == "Told.\nTwice." and described.describe()["category"] == "per learner"
    assert described.describe()["parameters"] == ["course", "user"]  # the form still asks for what the function takes
    assert plain.doc == "The docstring." and plain.describe()["category"] == "per course, user"


def test_a_single_process_handler_is_on_the_user_shards() -> None:
    def on_event(events: list[Any]) -> None: ...

    def handler(**options: Any) -> Spec:
        return Spec("handler", ("on_event",), on_event, "grading", options=options)

    assert handler(single_process=True).shard_by == "user"
    assert handler(per_resource=True).shard_by == "resource"
    assert handler().shard_by is None


def test_task_names_say_the_kind_and_name() -> None:
    def on_event(events: list[Any]) -> None: ...

    assert spec(grades, "grades", "alias", kind="view").task_name == "view.grades"
    assert spec(grades, "grades", "alias", kind="query").task_name == "query.grades"
    assert spec(on_event, "ignored", kind="handler").task_name == "handler.grading.on_event"


# Discovery ---------------------------------------------------------------------------
QUERY = """
from tasks import query

@query(name="{name}")
def {name}():
    return "{name}"
"""


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, str]], str]]:
    """Write a package of analytics modules (relative path -> source) under a unique name; return the name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make(files: dict[str, str]) -> str:
        package = f"analytics_{uuid.uuid4().hex}"
        made.append(package)
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        for relative, source in files.items():
            path = tmp_path / package / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        return package

    yield make
    for name in [m for m in sys.modules if m.split(".")[0] in made]:
        del sys.modules[name]


def test_discover_loads_each_child_module_and_its_submodules(make_package: Callable[[dict[str, str]], str]) -> None:
    package = make_package(
        {
            "grading/__init__.py": QUERY.format(name="from_init"),
            "grading/queries.py": QUERY.format(name="from_submodule"),
            "grading/deep/__init__.py": "",
            "grading/deep/nested.py": QUERY.format(name="from_nested"),
            "forum.py": QUERY.format(name="from_plain_module"),
        }
    )
    registry = Registry()

    assert registry.discover([package]) == ["forum", "grading"]
    assert registry.modules == ["forum", "grading"]
    assert {s.name: s.module for s in registry.specs("query")} == {
        "from_init": "grading",
        "from_submodule": "grading",
        "from_nested": "grading",
        "from_plain_module": "forum",
    }


def test_discover_loads_a_module_named_directly(make_package: Callable[[dict[str, str]], str]) -> None:
    package = make_package({"forum.py": QUERY.format(name="posts")})
    registry = Registry()

    assert registry.discover([f"{package}.forum"]) == ["forum"]
    assert registry.get("query", "posts").module == "forum"


def test_discover_skips_names_starting_with_an_underscore(make_package: Callable[[dict[str, str]], str]) -> None:
    package = make_package(
        {
            "_helpers.py": QUERY.format(name="top_level_private"),
            "grading/__init__.py": "",
            "grading/_internal.py": QUERY.format(name="private_submodule"),
            "grading/_private/__init__.py": "",
            "grading/_private/inside.py": QUERY.format(name="inside_private_package"),
            "grading/public.py": QUERY.format(name="public"),
        }
    )
    registry = Registry()

    assert registry.discover([package]) == ["grading"]
    assert registry.names("query") == ["public"]
    assert not [m for m in sys.modules if m.startswith(package) and "._" in m]


def test_functions_imported_from_another_module_are_registered_once(
    make_package: Callable[[dict[str, str]], str],
) -> None:
    package = make_package(
        {
            "grading/__init__.py": "",
            "grading/queries.py": QUERY.format(name="grades"),
            "grading/views.py": "from .queries import grades\n",
        }
    )
    registry = Registry()
    registry.discover([package])

    assert [s.name for s in registry.specs("query")] == ["grades"]


def test_a_query_and_a_view_that_share_a_python_name_both_register(
    make_package: Callable[[dict[str, str]], str],
) -> None:
    """The original's test module defines djt_fake_user_count as a query, then as a view that
    calls it: the view rebinds the name, and the query (and its schedule) must register all the same."""
    source = """
        from tasks import cron, query, view

        @cron(run_every=3600)
        @query()
        def user_count():
            return 2

        @view()
        def user_count(query):
            return f"Users: {query.user_count()}"
    """
    package = make_package({"counting.py": source})
    registry = Registry()
    registry.discover([package])

    registered_query, registered_view = registry.get("query", "user_count"), registry.get("view", "user_count")
    assert registered_query.func is not registered_view.func
    assert registered_query.func() == 2
    assert registered_query.where.endswith(":4") and registered_view.where.endswith(":9")
    assert registry.get("cron", "cron.counting.user_count").func is registered_query.func


def test_a_query_defined_twice_in_one_module_is_still_a_duplicate(
    make_package: Callable[[dict[str, str]], str],
) -> None:
    source = """
        from tasks import query

        @query()
        def grades():
            return 1

        @query()
        def grades():
            return 2
    """
    package = make_package({"grading.py": source})

    with pytest.raises(DuplicateName, match="'grades' is defined twice") as error:
        Registry().discover([package])

    assert "grading.py:4" in str(error.value) and "grading.py:8" in str(error.value)


def test_a_function_wrapped_after_decoration_registers_once_as_the_wrapper(
    make_package: Callable[[dict[str, str]], str],
) -> None:
    source = """
        import functools

        from tasks import query

        def shouting(func):
            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                return func(*args, **kwargs).upper()
            return wrapper

        @shouting
        @query()
        def greeting():
            return "hello"
    """
    package = make_package({"greeting.py": source})
    registry = Registry()
    registry.discover([package])

    assert [s.func() for s in registry.specs("query")] == ["HELLO"]


def test_two_analytics_modules_with_the_same_name_are_refused(make_package: Callable[[dict[str, str]], str]) -> None:
    first = make_package({"grading.py": QUERY.format(name="one")})
    second = make_package({"grading.py": QUERY.format(name="two")})

    with pytest.raises(RegistrationError, match="two analytics modules are named 'grading'") as error:
        Registry().discover([first, second])

    assert f"{first}.grading" in str(error.value)
    assert f"{second}.grading" in str(error.value)


def test_a_module_that_fails_to_import_is_named(make_package: Callable[[dict[str, str]], str]) -> None:
    package = make_package(
        {
            "grading/__init__.py": "",
            "grading/broken.py": "import a_dependency_that_is_not_installed\n",
        }
    )

    with pytest.raises(
        RegistrationError, match=rf"could not import analytics module '{package}\.grading\.broken'"
    ) as e:
        Registry().discover([package])

    assert isinstance(e.value.__cause__, ImportError)


def test_discover_skips_excluded_module_names() -> None:
    registry = Registry()
    loaded = registry.discover(["modules", "tests.sample_modules"], exclude=["testmodule", "pipeline"])
    assert "testmodule" not in loaded and "pipeline" not in loaded and "datatypes" in loaded
    assert not [s for s in registry if s.module in ("testmodule", "pipeline")]


def test_an_opt_in_module_is_loaded_only_when_named_itself(make_package: Callable[[dict[str, str]], str]) -> None:
    package = make_package(
        {"grading.py": QUERY.format(name="grades"), "probe/__init__.py": "OPT_IN = True\n" + QUERY.format(name="probe")}
    )
    assert Registry().discover([package]) == ["grading"]
    named = Registry()
    assert named.discover([package, f"{package}.probe"]) == ["grading", "probe"]
    assert named.get("query", "probe").module == "probe"
    assert Registry().discover([package, f"{package}.probe"], exclude=["probe"]) == ["grading"]


def test_the_test_module_is_loaded_only_when_named_in_the_module_list() -> None:
    default = Registry()
    loaded = default.discover(["modules"])
    assert "testmodule" not in loaded and {"eventlog", "activity", "grades"} <= set(loaded)
    assert not [s for s in default if s.module == "testmodule"]
    named = Registry()
    assert "testmodule" in named.discover(["modules", "modules.testmodule"])
    assert named.get("query", "djt_event_count").module == "testmodule"
    assert named.get("handler", "handler.testmodule.djt_python_fs_event").module == "testmodule"


def test_a_function_without_a_docstring_is_registered_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from tasks import query
    from tasks.authoring.decorators import declarations_of

    @query()
    def undocumented(course):  # type: ignore[no-untyped-def]
        return course

    @query(description="Documented by its decorator.")
    def described(course):  # type: ignore[no-untyped-def]
        return course

    registry = Registry()
    with caplog.at_level("WARNING", logger="tasks.core.registry"):
        registry.add_declared("grading", undocumented, declarations_of(undocumented)[0])
        registry.add_declared("grading", described, declarations_of(described)[0])
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "query tests.tasks.test_registry.test_a_function_without_a_docstring_is_registered_with_a_warning"
        ".<locals>.undocumented has no docstring: /schema and the dashboard show none for it"
    ]


def test_an_entry_that_is_not_on_the_python_path_is_named_with_the_reason() -> None:
    with pytest.raises(RegistrationError, match=r"INSIGHTS_MODULES entry 'no_such_analytics_package'.*Python path"):
        Registry().discover(["no_such_analytics_package"])


def test_a_folder_without_init_that_holds_no_modules_is_an_error(
    make_package: Callable[[dict[str, str]], str], tmp_path: Path
) -> None:
    package = make_package({"empty_folder/README.txt": "no Python here\n"})
    with pytest.raises(RegistrationError, match=rf"'{package}\.empty_folder'.*no __init__\.py.*no modules"):
        Registry().discover([f"{package}.empty_folder"])


def test_a_package_without_decorated_functions_is_an_error(make_package: Callable[[dict[str, str]], str]) -> None:
    package = make_package({"helpers.py": "def plain():\n    return 1\n"})
    with pytest.raises(RegistrationError, match=rf"INSIGHTS_MODULES entry '{package}'.*no decorated function"):
        Registry().discover([package])


def test_a_package_without_child_modules_is_a_single_module(make_package: Callable[[dict[str, str]], str]) -> None:
    package = make_package({"grading/__init__.py": QUERY.format(name="grades")})
    registry = Registry()
    assert registry.discover([f"{package}.grading"]) == ["grading"]
    assert registry.get("query", "grades").module == "grading"
