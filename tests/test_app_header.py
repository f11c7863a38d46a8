"""The app's header: who is signed in and a short summary of their roles, every grant on hover."""

from __future__ import annotations

import html
import re

import pytest

pytest.importorskip("panel")

from pmkit.demo import open_demo
from pmkit_widgets.app import HEADER_GRANTS, _who, role_summary


def test_the_summary_names_the_strongest_grants_and_counts_the_rest():
    grants = [(f"desk_{i}", "viewer") for i in range(40)] + [("firm", "manager")]
    short, full = role_summary(grants)
    assert short.startswith("manager on firm, viewer on desk_0")
    assert short.endswith(f"+{len(grants) - HEADER_GRANTS} more")
    assert len(short) < 60  # does not grow with the number of grants
    assert full.count(";") == len(grants) - 1 and "viewer on desk_39" in full


def test_no_grants_and_administrators_read_plainly():
    assert role_summary([]) == ("no roles", "no roles")
    assert role_summary([("firm", "viewer")], admin=True)[0] == "administrator"


@pytest.mark.parametrize("user", ["alice", "bob", "carol"])
def test_the_header_shows_the_demo_users_grants_from_the_registry(user):
    reg = open_demo().as_user(user)
    grants = reg.view().own_grants()
    text = _who(reg, logins=True)
    visible = html.unescape(re.sub(r"<[^>]+>", "", text))
    short, full = role_summary(grants)
    assert f"({user}: {short})" in visible
    assert html.unescape(re.search(r"title='([^']*)'", text).group(1)) == full
    assert "Log out" in visible


def test_a_hostile_display_name_is_shown_as_text():
    reg = open_demo()
    reg.add_user("mallory", display_name="<img src=x onerror=alert(1)>")
    text = _who(reg.as_user("mallory"), logins=False)
    assert "<img" not in text and "&lt;img" in text


def test_the_favicon_file_is_the_mark() -> None:
    from urllib.parse import unquote

    from pmkit_widgets.brand import FAVICON, FAVICON_FILE, mark_svg

    assert FAVICON_FILE.read_text().strip() == mark_svg(32)
    assert unquote(FAVICON.split(",", 1)[1]) == mark_svg(32)  # the sign-in pages' copy
