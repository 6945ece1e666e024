"""What a detection groups its state by, and the key of an event in each grouping.

One definition for every part that must agree: the engine keys a rule's state with
`key_of(grouping, event)`, normalize routes each event to the `phi-events` partition owning
that key (phiwatch/phievents/routing.py), and the registry refuses a grouping no route
serves. A key is prefixed by its kind, so keys of two groupings never collide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from phiwatch.model import AccessEvent
from phiwatch.sources.fields import subscription_of

Grouping = Literal[
    "actor",  # who did it: Entra object id, else app id, else credential, else address
    "patient",  # whose record: the patient pseudonym (many users opening one chart)
    "source_address",  # where from: one address trying many accounts (password spray)
    "credential",  # which secret: a SAS signature or account key used without a principal
    "resource_category",  # one resource's one log category (a source gone silent)
    "subscription",  # everything under one subscription (a resource and its parents)
]
GROUPINGS: tuple[Grouping, ...] = get_args(Grouping)


def actor_key(event: AccessEvent) -> str | None:
    """Who did it: Entra object id, else the app id, else the credential (a Storage SAS
    signature or account key used without a principal), else the source address.

    The credential comes after every principal and before the address: only Storage events
    carry a CredentialId, so every other source's key (and so its AlertIds) is unchanged,
    and requests with one SAS token from many addresses stay one actor."""
    if event.actor_user_id:
        return f"oid:{event.actor_user_id}"
    if event.acting_app_id:
        return f"app:{event.acting_app_id}"
    if event.credential_id:
        return f"cred:{event.credential_id}"
    if event.src_ip_addr:
        return f"ip:{event.src_ip_addr}"
    return None


def patient_key(event: AccessEvent) -> str | None:
    return f"pat:{event.patient_ref}" if event.patient_ref else None


def source_address_key(event: AccessEvent) -> str | None:
    return f"ip:{event.src_ip_addr}" if event.src_ip_addr else None


def credential_key(event: AccessEvent) -> str | None:
    return f"cred:{event.credential_id}" if event.credential_id else None


def resource_category_key(event: AccessEvent) -> str | None:
    if not event.target_resource_id:
        return None
    return f"rc:{event.target_resource_id.lower()}|{event.source_category}"


def subscription_key(event: AccessEvent) -> str | None:
    """Events without a subscription (tenant-level changes) share the key `sub:`."""
    return f"sub:{subscription_of(event.target_resource_id) or ''}"


KEY_OF: dict[Grouping, Callable[[AccessEvent], str | None]] = {
    "actor": actor_key,
    "patient": patient_key,
    "source_address": source_address_key,
    "credential": credential_key,
    "resource_category": resource_category_key,
    "subscription": subscription_key,
}


def key_of(grouping: Grouping, event: AccessEvent) -> str | None:
    """The event's key in `grouping`; None when the event has none (no rule of that
    grouping can count it)."""
    return KEY_OF[grouping](event)
