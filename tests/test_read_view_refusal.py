"""`ReadView.refusal`, `creation_refusal` and `role`: the services' own answer, asked in advance.

Front ends disable a control when the registry would refuse it; these tests
check that the answer given in advance is the answer the service gives when
the call is made (the call is the independent reference).
"""

from __future__ import annotations

import pytest

from pmkit.demo import DEMO_USERS, open_demo
from pmkit.errors import PermissionDenied
from pmkit.registry.access import ACTION_ROLES, Role

PORTFOLIOS = ("client_a/growth", "client_b/balanced")
CALLS = {  # action -> the registry call that needs it
    "portfolio.deactivate": lambda reg, pid: reg.deactivate(pid),
    "portfolio.archive": lambda reg, pid: reg.delete(pid),
}


@pytest.mark.parametrize("user", [*DEMO_USERS, "system"])
def test_a_refusal_in_advance_is_the_refusal_of_the_call(user):
    reg = open_demo()
    acting = reg.as_user(user)
    for pid in PORTFOLIOS:
        if not acting.view().may_read(pid):
            continue
        for action, call in CALLS.items():  # deactivate, then archive: both legal in turn
            said = acting.view().refusal(action, pid)
            before = reg.store.dump()
            try:
                call(acting, pid)
            except PermissionDenied as exc:
                assert said is not None, (user, action, pid)
                assert str(said) == str(exc) and said.needed == str(ACTION_ROLES[action])
                assert reg.store.dump() == before
            else:
                assert said is None, (user, action, pid)


def test_creation_refusal_is_the_refusal_of_create_portfolio():
    reg = open_demo()
    for user, (_grants, may_create) in DEMO_USERS.items():
        said = reg.as_user(user).view().creation_refusal()
        assert (said is None) is may_create
        try:
            reg.as_user(user).create_portfolio(f"{user}/probe", 0.0)
        except PermissionDenied as exc:
            assert said is not None and exc.needed == said.needed
        else:
            assert said is None
    assert reg.view().creation_refusal() is None  # the administrator


def test_role_is_the_highest_grant_on_the_target_and_its_groups():
    reg = open_demo()
    assert reg.as_user("carol").view().role("client_a/growth") == Role.VIEWER  # through firm
    reg.grant("carol", "client_a/growth", "manager")
    assert reg.as_user("carol").view().role("client_a/growth") == Role.MANAGER
    assert reg.as_user("carol").view().role("client_b/balanced") == Role.VIEWER
    assert reg.as_user("alice").view().role("client_b/balanced") is None
