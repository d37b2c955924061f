"""names.py: the console/user/group name rules and safe display of untrusted names."""

import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from consrv.names import (
    CONSOLE_NAME_RE,
    RESERVED_WORDS,
    USER_NAME_RE,
    InvalidName,
    safe_repr,
    validate_console_name,
    validate_group_name,
    validate_user_name,
)


@pytest.mark.parametrize(
    "name", ["a", "my-ioc", "IOC01", "0", "LLRF:crate.1_a-b", "x" * 64, "9lives"]
)
def test_valid_console_names(name: str) -> None:
    assert validate_console_name(name) == name


BAD_CONSOLE_NAMES = [
    "",
    "../x",
    "..",
    ".hidden",
    "-rf",
    "_x",
    "a/b",
    "a b",
    "x\x07",
    "x\n",
    "ioc\u00e9",
    "ioc\u202e",
    "$(rm)",
    "a;b",
    "x" * 65,
    "x" * 1000,
]


@pytest.mark.parametrize("name", BAD_CONSOLE_NAMES)
def test_invalid_console_names_are_refused_and_shown_safely(name: str) -> None:
    with pytest.raises(InvalidName) as info:
        validate_console_name(name)
    message = str(info.value)
    assert message.startswith("invalid console name ")
    assert message.isascii()
    assert all(char.isprintable() for char in message)
    assert len(message) < 200


def test_long_name_is_truncated_in_the_message() -> None:
    with pytest.raises(InvalidName, match=r"\.\.\. \(1000 characters\)"):
        validate_console_name("x" * 1000)


def test_non_string_is_invalid_name() -> None:
    with pytest.raises(InvalidName, match="must be a string"):
        validate_console_name(42)  # type: ignore[arg-type]


def test_invalid_name_is_a_value_error() -> None:
    assert issubclass(InvalidName, ValueError)


@pytest.mark.parametrize("name", ["alice", "_svc", "a.b-c_d", "A" * 32])
def test_valid_user_and_group_names(name: str) -> None:
    assert validate_user_name(name) == name
    assert validate_group_name(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "-x", ".x", "a b", "a@b", "a:b", "A" * 33, "\u00e9"])
def test_invalid_user_and_group_names(name: str) -> None:
    with pytest.raises(InvalidName, match="invalid user name"):
        validate_user_name(name)
    with pytest.raises(InvalidName, match="invalid group name"):
        validate_group_name(name)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("abc", "'abc'"),
        ("a\x07b", "'a\\x07b'"),
        ("\x1b[31m", "'\\x1b[31m'"),
        ("\u202e", "'\\u202e'"),
        ("x" * 41, "'" + "x" * 40 + "'... (41 characters)"),
    ],
)
def test_safe_repr(value: str, shown: str) -> None:
    assert safe_repr(value) == shown


def is_console_name(name: str) -> bool:
    """The whole rule: the regex, and not a command word."""
    return CONSOLE_NAME_RE.fullmatch(name) is not None and name not in RESERVED_WORDS


@given(st.text() | st.sampled_from(sorted(RESERVED_WORDS)))
@example("help")  # found by hypothesis: the regex accepts it, the rule does not
@example("my-ioc")
def test_console_name_accepts_exactly_the_regex_less_the_command_words(name: str) -> None:
    try:
        assert validate_console_name(name) == name
    except InvalidName:
        assert not is_console_name(name)
    else:
        assert is_console_name(name)


@given(st.from_regex(CONSOLE_NAME_RE, fullmatch=True))
@example("list")
def test_every_regex_match_but_a_command_word_is_a_valid_console_name(name: str) -> None:
    if name in RESERVED_WORDS:
        with pytest.raises(InvalidName, match="is a command word"):
            validate_console_name(name)
    else:
        assert validate_console_name(name) == name


@given(st.text())
def test_user_name_accepts_exactly_what_the_regex_accepts(name: str) -> None:
    try:
        validate_user_name(name)
    except InvalidName:
        assert USER_NAME_RE.fullmatch(name) is None
    else:
        assert USER_NAME_RE.fullmatch(name) is not None


def test_configuration_md_lists_every_reserved_word() -> None:
    """The reference says exactly which names a console may not have."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    found = re.search(r"command words\s+\(`([a-z ]+)`\)", text)
    assert found is not None, "configuration.md: the command words' list is gone"
    assert sorted(found[1].split()) == sorted(RESERVED_WORDS)
