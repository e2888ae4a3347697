"""The document lifecycle table: the happy path, every refusal, and the table's shape."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import IllegalTransition, NotPermitted
from protocol.workflow import (
    EVENT_RULES,
    RECEIPT_STEP,
    REPLY_EXPECTED_KINDS,
    REPLY_KIND,
    TRANSITIONS,
    Action,
    Event,
    Role,
    State,
    action_for_receipt,
    allowed_actions,
    apply,
    awaits_reply,
    check_event,
    is_open,
    is_terminal,
    parse_action,
    parse_role,
    parse_state,
)

ALL_PAIRS = list(itertools.product(State, Action))
ILLEGAL_PAIRS = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]
REASON = "不属本单位职责"


# --- happy paths --------------------------------------------------------------

def test_happy_path_deliver_sign_assign_instruct_complete():
    state = apply(State.SENT, Action.DELIVER, Role.SYSTEM)
    assert state is State.DELIVERED
    state = apply(state, Action.SIGN_FOR, Role.CLERK)
    assert state is State.SIGNED_FOR
    state = apply(state, Action.INSTRUCT, Role.LEADER)
    assert state is State.SIGNED_FOR
    state = apply(state, Action.ASSIGN, Role.CLERK)
    assert state is State.ASSIGNED
    for _ in range(3):
        state = apply(state, Action.INSTRUCT, Role.LEADER)
        assert state is State.ASSIGNED
    state = apply(state, Action.ASSIGN, Role.LEADER)  # re-assign
    assert state is State.ASSIGNED
    state = apply(state, Action.COMPLETE, Role.HANDLER)
    assert state is State.COMPLETED
    assert is_terminal(state)


def test_sender_replays_receipts_without_roles():
    state = State.SENT
    for step in ["delivered", "signed_for", "assigned", "instructed", "completed"]:
        state = apply(state, action_for_receipt(step))
    assert state is State.COMPLETED


@pytest.mark.parametrize("start", [State.DELIVERED, State.SIGNED_FOR, State.ASSIGNED])
def test_return_with_reason_is_allowed_until_completed(start):
    assert apply(start, Action.RETURN, Role.CLERK, reason=REASON) is State.RETURNED
    assert apply(start, Action.RETURN, reason=REASON) is State.RETURNED


@pytest.mark.parametrize("reason", [None, "", "   ", "\n\t"])
def test_return_without_reason_is_refused(reason):
    with pytest.raises(IllegalTransition, match="reason"):
        apply(State.SIGNED_FOR, Action.RETURN, Role.CLERK, reason=reason)


def test_return_after_completion_is_refused():
    with pytest.raises(IllegalTransition):
        apply(State.COMPLETED, Action.RETURN, Role.ADMIN, reason=REASON)


# --- the table is the only source of legality --------------------------------

def test_table_keys_match_rows_and_every_state_is_used():
    for (state, action), t in TRANSITIONS.items():
        assert (t.from_state, t.action) == (state, action)
        assert t.roles, f"{state}/{action} allows nobody"
    reached = {State.SENT} | {t.to_state for t in TRANSITIONS.values()}
    assert reached == set(State)
    assert ILLEGAL_PAIRS  # otherwise the next test proves nothing


@pytest.mark.parametrize(("state", "action"), ILLEGAL_PAIRS)
def test_every_pair_outside_the_table_is_illegal(state, action):
    for role in [None, *Role]:
        with pytest.raises(IllegalTransition) as info:
            apply(state, action, role, reason=REASON)
        assert info.value.code == "illegal_transition"
        assert repr(state.value) in info.value.detail
        assert repr(action.value) in info.value.detail


def test_illegal_message_names_what_is_allowed():
    with pytest.raises(IllegalTransition) as info:
        apply(State.DELIVERED, Action.COMPLETE)
    assert "sign_for" in info.value.detail and "return" in info.value.detail
    with pytest.raises(IllegalTransition, match="final"):
        apply(State.COMPLETED, Action.ASSIGN)


@settings(max_examples=200, deadline=None)
@given(
    start=st.sampled_from(State),
    steps=st.lists(
        st.tuples(
            st.sampled_from(Action),
            st.none() | st.sampled_from(Role),
            st.sampled_from([None, "", " ", REASON]),
        ),
        max_size=12,
    ),
)
def test_apply_succeeds_exactly_when_the_table_allows(start, steps):
    state = start
    for action, role, reason in steps:
        t = TRANSITIONS.get((state, action))
        assert (t is not None) == (action in allowed_actions(state))
        if t is None:
            with pytest.raises(IllegalTransition):
                apply(state, action, role, reason)
        elif role is not None and role not in t.roles:
            with pytest.raises(NotPermitted):
                apply(state, action, role, reason)
        elif t.needs_reason and not (reason or "").strip():
            with pytest.raises(IllegalTransition):
                apply(state, action, role, reason)
        else:
            state = apply(state, action, role, reason)
            assert state is t.to_state


# --- roles --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("state", "action", "role"),
    [
        (State.SENT, Action.DELIVER, Role.CLERK),
        (State.DELIVERED, Action.SIGN_FOR, Role.HANDLER),
        (State.SIGNED_FOR, Action.ASSIGN, Role.HANDLER),
        (State.ASSIGNED, Action.INSTRUCT, Role.CLERK),
        (State.ASSIGNED, Action.INSTRUCT, Role.ADMIN),
        (State.ASSIGNED, Action.COMPLETE, Role.CLERK),
        (State.ASSIGNED, Action.RETURN, Role.HANDLER),
        (State.DELIVERED, Action.SIGN_FOR, Role.SYSTEM),
    ],
)
def test_wrong_role_is_not_permitted(state, action, role):
    with pytest.raises(NotPermitted) as info:
        apply(state, action, role, reason=REASON)
    assert info.value.code == "not_permitted"
    assert repr(role.value) in info.value.detail
    assert apply(state, action, None, reason=REASON) in State  # the pair itself is legal


def test_operator_has_no_workflow_rights():
    for state in State:
        assert allowed_actions(state, Role.OPERATOR) == frozenset()
        for event in Event:
            if state in EVENT_RULES[event].states:
                with pytest.raises(NotPermitted):
                    check_event(state, event, Role.OPERATOR)


def test_allowed_actions_filters_by_role():
    assert allowed_actions(State.ASSIGNED) == {
        Action.ASSIGN, Action.INSTRUCT, Action.COMPLETE, Action.RETURN
    }
    assert allowed_actions(State.ASSIGNED, Role.HANDLER) == {Action.COMPLETE}
    assert allowed_actions(State.SIGNED_FOR, Role.LEADER) == {
        Action.ASSIGN, Action.INSTRUCT, Action.RETURN
    }


# --- terminal states and events -------------------------------------------------

@pytest.mark.parametrize("state", list(State))
def test_terminal_states_allow_nothing_and_others_allow_something(state):
    assert is_terminal(state) == (allowed_actions(state) == frozenset())
    assert is_terminal(state) == (state in {State.COMPLETED, State.RETURNED})


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_events_only_in_open_states(state, event):
    if state in {State.DELIVERED, State.SIGNED_FOR, State.ASSIGNED}:
        assert check_event(state, event) is None
    else:
        with pytest.raises(IllegalTransition):
            check_event(state, event, Role.ADMIN)


def test_event_roles():
    check_event(State.ASSIGNED, Event.REMIND, Role.SYSTEM)  # automatic overdue reminder
    check_event(State.ASSIGNED, Event.SUPERVISE, Role.LEADER)
    for role in [Role.CLERK, Role.HANDLER, Role.SYSTEM]:
        with pytest.raises(NotPermitted):
            check_event(State.ASSIGNED, Event.SUPERVISE, role)
    with pytest.raises(NotPermitted):
        check_event(State.DELIVERED, Event.REMIND, Role.HANDLER)


# --- receipts and parsing -------------------------------------------------------

def test_receipt_steps_round_trip_and_match_states():
    assert set(RECEIPT_STEP) == set(Action)
    assert len(set(RECEIPT_STEP.values())) == len(Action)
    for action, step in RECEIPT_STEP.items():
        assert action_for_receipt(step) is action
        targets = {t.to_state for t in TRANSITIONS.values() if t.action is action}
        if action is Action.INSTRUCT:
            assert step == "instructed"
        else:  # a state-changing receipt is named after the state it reports
            assert targets == {State(step)}


@given(st.text(max_size=12) | st.none() | st.integers())
def test_unknown_names_raise_illegal_transition_never_value_error(name):
    if name in RECEIPT_STEP.values():
        return
    with pytest.raises(IllegalTransition):
        action_for_receipt(name)
    for parse, enum in [(parse_state, State), (parse_action, Action), (parse_role, Role)]:
        if name in {m.value for m in enum}:
            assert parse(name) is enum(name)
        else:
            with pytest.raises(IllegalTransition, match="unknown"):
                parse(name)


def test_parse_known_names():
    assert parse_state("signed_for") is State.SIGNED_FOR
    assert parse_action("return") is Action.RETURN
    assert parse_role("leader") is Role.LEADER


# --- 请示 / 批复 ----------------------------------------------------------------

def test_request_awaits_reply_until_replied():
    assert REPLY_EXPECTED_KINDS == {"请示"} and REPLY_KIND["请示"] == "批复"
    for state in State:
        expected = state is not State.RETURNED
        assert awaits_reply("请示", state, replied=False) is expected
        assert awaits_reply("请示", state, replied=True) is False
        assert awaits_reply("通知", state, replied=False) is False
    # a completed request is still open until its reply arrives; a returned one is closed
    assert is_open("请示", State.COMPLETED, replied=False)
    assert not is_open("请示", State.COMPLETED, replied=True)
    assert not is_open("请示", State.RETURNED, replied=False)
    assert not is_open("通知", State.COMPLETED, replied=False)
    assert is_open("通知", State.ASSIGNED, replied=False)
