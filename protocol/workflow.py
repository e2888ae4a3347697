"""The life of one received official document (公文), as one transition table.

Theory of operation
-------------------
A document addressed to a unit moves through a small number of states::

    sent --deliver--> delivered --sign_for--> signed_for --assign--> assigned --complete--> completed
                          |                       |  ^ instruct*       | ^ assign*, instruct*
                          +-------return----------+--------------------+----> returned

``TRANSITIONS`` below is the whole rule book. Both sides of an exchange read it:

* the **receiving** node calls ``apply(state, action, role, reason)`` before it lets a
  person act (签收, 分办, 批示, 办结, 退文); the role is checked;
* the **sending** node keeps its own copy of the recipient's state, built only from the
  signed receipts the recipient returns (``delivered``, ``signed_for``, ... see
  ``RECEIPT_STEP``). It calls ``apply(state, action_for_receipt(step))`` with no role:
  the receipt's signature already proves the recipient node allowed the step.

So the two sides can never disagree about what is legal. Receipts must be applied in
the recipient's order; deduplicating and reordering them is the node's job, not ours.

Some things happen to a document without moving it: a leader's instruction (批示) is
an action that keeps the state, and reminders (催办) and supervision (督办) are
``Event``s, checked by ``check_event`` against ``EVENT_RULES``.

A request (请示) expects a reply (批复): it stays open on both sides, even after the
recipient completes it, until the reply arrives (``awaits_reply`` / ``is_open``).

This module is sans-I/O: no clock, no storage, no randomness. Every refusal is an
``IllegalTransition`` (the pair is not in the table, or input is unknown) or a
``NotPermitted`` (the role may not do this); no other exception escapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final, Mapping, TypeVar

from protocol.errors import IllegalTransition, NotPermitted


class State(str, Enum):
    SENT = "sent"  # at the sender, before any receipt
    DELIVERED = "delivered"  # stored at the destination node
    SIGNED_FOR = "signed_for"  # 签收
    ASSIGNED = "assigned"  # 分办
    COMPLETED = "completed"  # 办结
    RETURNED = "returned"  # 退文


class Action(str, Enum):
    DELIVER = "deliver"  # by the system, when stored at the destination
    SIGN_FOR = "sign_for"  # 签收
    ASSIGN = "assign"  # 分办 (again, to re-assign)
    INSTRUCT = "instruct"  # 批示, keeps the state
    COMPLETE = "complete"  # 办结
    RETURN = "return"  # 退文, with a reason


class Role(str, Enum):
    SYSTEM = "system"  # the node itself
    CLERK = "clerk"
    HANDLER = "handler"
    LEADER = "leader"
    OPERATOR = "operator"  # federation operations only: no workflow rights
    ADMIN = "admin"


class Event(str, Enum):
    REMIND = "remind"  # 催办
    SUPERVISE = "supervise"  # 督办


@dataclass(frozen=True)
class Transition:
    from_state: State
    action: Action
    to_state: State
    roles: frozenset[Role]
    needs_reason: bool = False


@dataclass(frozen=True)
class EventRule:
    states: frozenset[State]
    roles: frozenset[Role]


BY_SYSTEM: Final = frozenset({Role.SYSTEM})
BY_OFFICE: Final = frozenset({Role.CLERK, Role.LEADER, Role.ADMIN})  # 收发: sign, assign, return
BY_HANDLER: Final = frozenset({Role.HANDLER, Role.LEADER, Role.ADMIN})  # 承办
BY_LEADER: Final = frozenset({Role.LEADER})

# fmt: off
_TABLE: Final = {
    # (state now,          action):           (state after,       who may act, needs reason)
    (State.SENT,       Action.DELIVER):   (State.DELIVERED,  BY_SYSTEM,  False),
    (State.DELIVERED,  Action.SIGN_FOR):  (State.SIGNED_FOR, BY_OFFICE,  False),
    (State.DELIVERED,  Action.RETURN):    (State.RETURNED,   BY_OFFICE,  True),
    (State.SIGNED_FOR, Action.ASSIGN):    (State.ASSIGNED,   BY_OFFICE,  False),
    (State.SIGNED_FOR, Action.INSTRUCT):  (State.SIGNED_FOR, BY_LEADER,  False),
    (State.SIGNED_FOR, Action.RETURN):    (State.RETURNED,   BY_OFFICE,  True),
    (State.ASSIGNED,   Action.ASSIGN):    (State.ASSIGNED,   BY_OFFICE,  False),
    (State.ASSIGNED,   Action.INSTRUCT):  (State.ASSIGNED,   BY_LEADER,  False),
    (State.ASSIGNED,   Action.COMPLETE):  (State.COMPLETED,  BY_HANDLER, False),
    (State.ASSIGNED,   Action.RETURN):    (State.RETURNED,   BY_OFFICE,  True),
}
# fmt: on

TRANSITIONS: Final[Mapping[tuple[State, Action], Transition]] = MappingProxyType(
    {key: Transition(*key, *rest) for key, rest in _TABLE.items()}
)

TERMINAL_STATES: Final = frozenset({State.COMPLETED, State.RETURNED})
OPEN_STATES: Final = frozenset({State.DELIVERED, State.SIGNED_FOR, State.ASSIGNED})

EVENT_RULES: Final[Mapping[Event, EventRule]] = MappingProxyType({
    # automatic overdue reminders are raised by the system
    Event.REMIND: EventRule(OPEN_STATES, frozenset({Role.CLERK, Role.LEADER, Role.ADMIN, Role.SYSTEM})),
    Event.SUPERVISE: EventRule(OPEN_STATES, frozenset({Role.LEADER, Role.ADMIN})),
})

# The receipt step each action reports to the sender.
RECEIPT_STEP: Final[Mapping[Action, str]] = MappingProxyType({
    Action.DELIVER: "delivered",
    Action.SIGN_FOR: "signed_for",
    Action.ASSIGN: "assigned",
    Action.INSTRUCT: "instructed",
    Action.COMPLETE: "completed",
    Action.RETURN: "returned",
})
_ACTION_BY_STEP: Final = {step: action for action, step in RECEIPT_STEP.items()}

REPLY_EXPECTED_KINDS: Final = frozenset({"请示"})
REPLY_KIND: Final[Mapping[str, str]] = MappingProxyType({"请示": "批复"})


# --- the rules ----------------------------------------------------------------

def apply(
    state: State, action: Action, role: Role | None = None, reason: str | None = None
) -> State:
    """The state after ``action``, or a refusal. ``role=None`` skips the role check."""
    transition = TRANSITIONS.get((state, action))
    if transition is None:
        allowed = _names(allowed_actions(state), Action) or "nothing (final state)"
        raise IllegalTransition(
            f"cannot {_name(action)} a document that is {_name(state)}; "
            f"allowed when {_name(state)}: {allowed}"
        )
    if role is not None and role not in transition.roles:
        raise NotPermitted(
            f"role {_name(role)} may not {_name(action)}; "
            f"allowed roles: {_names(transition.roles, Role)}"
        )
    if transition.needs_reason and not (isinstance(reason, str) and reason.strip()):
        raise IllegalTransition(f"{_name(action)} needs a reason")
    return transition.to_state


def allowed_actions(state: State, role: Role | None = None) -> frozenset[Action]:
    """Actions legal in ``state`` (and, if ``role`` is given, open to that role)."""
    return frozenset(
        t.action
        for t in TRANSITIONS.values()
        if t.from_state == state and (role is None or role in t.roles)
    )


def is_terminal(state: State) -> bool:
    return state in TERMINAL_STATES


def check_event(state: State, event: Event, role: Role | None = None) -> None:
    """Refuse a reminder/supervision that is out of place; it never changes the state."""
    rule = EVENT_RULES.get(event)
    if rule is None:
        raise IllegalTransition(f"unknown event {event!r}")
    if state not in rule.states:
        raise IllegalTransition(
            f"cannot {_name(event)} a document that is {_name(state)}; "
            f"{_name(event)} is allowed when: {_names(rule.states, State)}"
        )
    if role is not None and role not in rule.roles:
        raise NotPermitted(
            f"role {_name(role)} may not {_name(event)}; "
            f"allowed roles: {_names(rule.roles, Role)}"
        )


def action_for_receipt(step: str) -> Action:
    """The action a receipt step reports (``"signed_for"`` -> ``Action.SIGN_FOR``)."""
    action = _ACTION_BY_STEP.get(step) if isinstance(step, str) else None
    if action is None:
        raise IllegalTransition(
            f"unknown receipt step {step!r}; known: {', '.join(RECEIPT_STEP.values())}"
        )
    return action


def awaits_reply(kind: str, state: State, replied: bool) -> bool:
    """A 请示 waits for its 批复 on both sides, unless it was returned."""
    return kind in REPLY_EXPECTED_KINDS and not replied and state != State.RETURNED


def is_open(kind: str, state: State, replied: bool) -> bool:
    return not is_terminal(state) or awaits_reply(kind, state, replied)


# --- parsing names from the wire / forms --------------------------------------

_E = TypeVar("_E", bound=Enum)


def _parse(enum: type[_E], text: object) -> _E:
    try:
        return enum(text)
    except (ValueError, TypeError):
        known = ", ".join(member.value for member in enum)
        raise IllegalTransition(
            f"unknown {enum.__name__.lower()} {text!r}; known: {known}"
        ) from None


def parse_state(text: str) -> State:
    return _parse(State, text)


def parse_action(text: str) -> Action:
    return _parse(Action, text)


def parse_role(text: str) -> Role:
    return _parse(Role, text)


def _name(member: object) -> str:
    return repr(member.value if isinstance(member, Enum) else member)


def _names(members: frozenset[_E], enum: type[_E]) -> str:
    """Members in declaration order, so messages read the same every time."""
    return ", ".join(m.value for m in enum if m in members)
