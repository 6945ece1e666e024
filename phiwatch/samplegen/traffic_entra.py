"""Entra ID logs as a tenant diagnostic setting streams them: the four sign-in categories
(with the record's own coordinates, ASN, risk and conditional access) and directory
``AuditLogs`` (PIM activations and the Core Directory role changes they cause).

Everything here is benign on purpose: one location per person, rare typos, no spray, no
role granted outside PIM. The detections that read these sources add their own incidents.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

from .clock import iso7, sample_time
from .emitted import Emitted
from .ids import new_uuid, public_ip
from .plan import ScenarioPlan
from .population import Actor, Population

# (city, state, country, latitude, longitude, ASN) — documentation ASNs (RFC 5398).
_HOSPITAL = ("Boston", "Massachusetts", "US", 42.3355, -71.1055, 64500)
_HOMES = (
    ("Worcester", "Massachusetts", "US", 42.2626, -71.8023, 64501),
    ("Providence", "Rhode Island", "US", 41.824, -71.4128, 64502),
    ("Manchester", "New Hampshire", "US", 42.9956, -71.4548, 64503),
    ("Hartford", "Connecticut", "US", 41.7658, -72.6734, 64504),
)
_AZURE_EAST = ("Boydton", "Virginia", "US", 36.6676, -78.3875, 8075)
_APPS = (
    ("EHR Portal", 0.5),
    ("Microsoft Teams", 0.2),
    ("Office 365 Exchange Online", 0.15),
    ("Azure Portal", 0.1),
    ("Microsoft Authenticator App", 0.05),
)
_RESOURCES = {
    "EHR Portal": ("EHR Portal API", "api://ehr-portal"),
    "Microsoft Teams": ("Microsoft Teams Services", "cc15fd57-2c6c-4117-a88c-83b1d56b4bbe"),
    "Office 365 Exchange Online": (
        "Office 365 Exchange Online",
        "00000002-0000-0ff1-ce00-000000000000",
    ),
    "Azure Portal": (
        "Windows Azure Service Management API",
        "797f4846-ba00-4fd7-ba43-dac1f8f63013",
    ),
    "Microsoft Authenticator App": ("Microsoft Graph", "00000003-0000-0000-c000-000000000000"),
}
# (resultType, failureReason, additionalDetails, weight)
_FAILURES = (
    (
        "50126",
        "Error validating credentials due to invalid username or password.",
        "The user didn't enter the right credentials.",
        5,
    ),
    (
        "50074",
        "Strong Authentication is required.",
        "The user was presented options to provide a second factor.",
        4,
    ),
    (
        "50140",
        "This error occurred due to 'Keep me signed in' interrupt when the user was signing in.",
        "",
        3,
    ),
    (
        "500121",
        "Authentication failed during strong authentication request.",
        "MFA denied; user did not respond to mobile app notification",
        1,
    ),
    ("53003", "Access has been blocked by Conditional Access policies.", "", 1),
)
_ROLES = (
    ("Application Administrator", "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"),
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    ("Security Reader", "5d6b6bb7-de71-4623-b4af-96380a352509"),
    ("Global Reader", "f2ef992c-3afb-46b9-b7cf-a126ee74c451"),
)
_NAT_IP = "203.0.113.10"  # the hospital's egress: every on-site sign-in comes from it


def _where(actor: Actor) -> tuple[str, tuple[str, str, str, float, float, int]]:
    """On-site staff egress through the hospital NAT; remote staff sign in from home."""
    if actor.ip.startswith("10."):
        return _NAT_IP, _HOSPITAL
    return actor.ip, _HOMES[int(actor.oid[:4], 16) % len(_HOMES)]


def _location(place: tuple[str, str, str, float, float, int] | None) -> dict[str, Any]:
    if place is None:
        return {}
    city, state, country, lat, lon, _ = place
    return {
        "city": city,
        "state": state,
        "countryOrRegion": country,
        "geoCoordinates": {"latitude": lat, "longitude": lon},
    }


def _envelope(
    pop: Population,
    t: datetime,
    category: str,
    result: str,
    ip: str,
    identity: str,
    country: str,
    rng: random.Random,
    *,
    operation: str = "Sign-in activity",
    description: str = "",
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "time": iso7(t),
        "resourceId": f"/tenants/{pop.tenant_id}/providers/Microsoft.aadiam",
        "operationName": operation,
        "operationVersion": "1.0",
        "category": category,
        "tenantId": pop.tenant_id,
        "resultType": result,
        "resultSignature": "None",
        "resultDescription": description,
        "durationMs": 0,
        "callerIpAddress": ip,
        "correlationId": new_uuid(rng),
        "identity": identity,
        "Level": 4 if result == "0" else 3,
        "location": country,
    }
    roll = rng.random()
    if roll < 0.05:
        rec["Level"] = str(rec["Level"])
    elif roll < 0.08:  # both spellings in one record, as some exporters ship it
        rec["level"] = "Informational" if result == "0" else "Warning"
    if rng.random() < 0.02:
        rec["durationMs"] = "0"
    return rec


def user_signin(
    pop: Population, actor: Actor, t: datetime, rng: random.Random, *, interactive: bool
) -> Emitted:
    ip, place = _where(actor)
    app = rng.choices([a for a, _ in _APPS], weights=[w for _, w in _APPS])[0]
    failure = None
    if interactive and rng.random() < 0.04:
        failure = rng.choices(_FAILURES, weights=[f[3] for f in _FAILURES])[0]
    elif not interactive and rng.random() < 0.01:
        failure = _FAILURES[2]
    result = failure[0] if failure else "0"
    risk = rng.choices(("none", "low", "hidden"), weights=(96, 2, 2))[0]
    risk_state = {"none": "none", "low": rng.choice(("atRisk", "dismissed")), "hidden": "none"}
    mfa = interactive and app in ("EHR Portal", "Azure Portal")
    resource_name, resource_id = _RESOURCES[app]
    status: dict[str, Any] = {"errorCode": int(result)}
    if failure:
        status |= {"failureReason": failure[1]}
        if failure[2]:
            status["additionalDetails"] = failure[2]
    ca = "failure" if result == "53003" else ("success" if mfa else "notApplied")
    props: dict[str, Any] = {
        "id": new_uuid(rng),
        "createdDateTime": f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}+00:00",
        "userDisplayName": actor.name,
        "userPrincipalName": actor.upn,
        "userId": actor.oid,
        "appId": actor.app_id if app == "EHR Portal" else new_uuid(rng),
        "appDisplayName": app,
        "ipAddress": ip,
        "status": status,
        "clientAppUsed": "Browser" if interactive else "Mobile Apps and Desktop clients",
        "userAgent": actor.user_agent,
        "deviceDetail": {"deviceId": "", "operatingSystem": "Windows10", "browser": "Edge 130.0.0"},
        "location": _location(place),
        "correlationId": new_uuid(rng),
        "conditionalAccessStatus": ca,
        "isInteractive": interactive,
        "tokenIssuerType": "AzureAD",
        "riskDetail": "none",
        "riskLevelAggregated": risk,
        "riskLevelDuringSignIn": risk,
        "riskState": risk_state[risk],
        "riskEventTypes": [],
        "riskEventTypes_v2": ["unfamiliarFeatures"] if risk == "low" else [],
        "resourceDisplayName": resource_name,
        "resourceId": resource_id,
        "userType": "Member",
        "autonomousSystemNumber": place[5],
        "authenticationRequirement": "multiFactorAuthentication"
        if mfa
        else "singleFactorAuthentication",
        "uniqueTokenIdentifier": new_uuid(rng).replace("-", "")[:22],
        "crossTenantAccessType": "none",
        "homeTenantId": pop.tenant_id,
    }
    if mfa:
        props["mfaDetail"] = {"authMethod": "Mobile app notification", "authDetail": None}
        props["authenticationDetails"] = [
            {
                "authenticationMethod": "Password",
                "succeeded": result != "50126",
                "authenticationStepResultDetail": "Correct password"
                if result != "50126"
                else "Invalid username or password or Invalid on-premise username or password.",
            },
            {
                "authenticationMethod": "Mobile app notification",
                "succeeded": result == "0",
                "authenticationStepResultDetail": "MFA successfully completed"
                if result == "0"
                else "MFA required in Azure AD",
            },
        ]
    category = "SignInLogs" if interactive else "NonInteractiveUserSignInLogs"
    rec = _envelope(
        pop,
        t,
        category,
        result,
        ip,
        actor.name,
        place[2],
        rng,
        description=failure[1] if failure else "",
    )
    rec["properties"] = props
    return Emitted(t, rec["resourceId"].lower() + "/" + category.lower(), "signin", rec, actor.oid)


def app_signin(pop: Population, actor: Actor, t: datetime, rng: random.Random) -> Emitted:
    managed = actor.kind == "mi"
    category = "ManagedIdentitySignInLogs" if managed else "ServicePrincipalSignInLogs"
    place = None if managed else _AZURE_EAST  # managed identities often carry no location
    ip = "" if managed else public_ip(rng)
    props: dict[str, Any] = {
        "id": new_uuid(rng),
        "createdDateTime": f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}+00:00",
        "appId": actor.app_id,
        "appDisplayName": actor.name,
        "ipAddress": ip,
        "status": {"errorCode": 0},
        "location": _location(place),
        "correlationId": new_uuid(rng),
        "conditionalAccessStatus": "notApplied",
        "isInteractive": False,
        "servicePrincipalId": actor.oid,
        "servicePrincipalName": actor.name,
        "resourceDisplayName": rng.choice(
            ("Azure Key Vault", "Azure Storage", "Azure Health Data Services", "Azure SQL Database")
        ),
        "resourceId": new_uuid(rng),
        "riskLevelAggregated": "none",
        "riskLevelDuringSignIn": "none",
        "riskState": "none",
        "autonomousSystemNumber": place[5] if place else 0,
        "uniqueTokenIdentifier": new_uuid(rng).replace("-", "")[:22],
    }
    if managed:
        props["managedServiceIdentity"] = {"msiType": "systemAssigned"}
    else:
        props["clientCredentialType"] = rng.choice(("clientSecret", "certificate"))
        props["servicePrincipalCredentialKeyId"] = new_uuid(rng)
    rec = _envelope(pop, t, category, "0", ip, actor.name, "US", rng)
    rec["properties"] = props
    stream = rec["resourceId"].lower() + "/" + category.lower()
    return Emitted(t, stream, "signin", rec, actor.oid)


def signin_traffic(
    pop: Population, plan: ScenarioPlan, rng: random.Random, budget: int
) -> list[Emitted]:
    weights = [c.weight for c in pop.clinicians]
    out: list[Emitted] = []
    for _ in range(budget * 10):
        if len(out) >= budget:
            break
        roll = rng.random()
        t = sample_time(
            rng, plan.start, flat=0.1 if roll < 0.8 else 0.9, tail=timedelta(minutes=10)
        )
        if roll < 0.8:
            actor = rng.choices(pop.clinicians, weights=weights)[0]
            if plan.busy(actor.oid, t, timedelta(minutes=60)):
                continue
            interactive = roll < 0.3
            first = user_signin(pop, actor, t, rng, interactive=interactive)
            out.append(first)
            result = first.record.get("resultType") if isinstance(first.record, dict) else None
            if interactive and result in ("50126", "50074", "50140"):
                # the user tries again a few seconds later and gets in
                again = t + timedelta(seconds=rng.uniform(5, 40))
                out.append(user_signin(pop, actor, again, rng, interactive=True))
        else:
            actor = rng.choice(pop.principals)
            out.append(app_signin(pop, actor, t, rng))
    return out


def _prop(name: str, new: str | None, old: str | None = None) -> dict[str, Any]:
    return {
        "displayName": name,
        "oldValue": None if old is None else json.dumps(old),
        "newValue": None if new is None else json.dumps(new),
    }


def directory_record(
    pop: Population,
    t: datetime,
    activity: str,
    service: str,
    category: str,
    initiator: dict[str, Any],
    targets: list[dict[str, Any]],
    rng: random.Random,
    *,
    corr: str,
    operation_type: str,
    ip: str | None,
) -> Emitted:
    identity = str(
        (initiator.get("user") or initiator.get("app") or {}).get("displayName")
        or (initiator.get("user") or {}).get("userPrincipalName", "")
    )
    rec = _envelope(pop, t, "AuditLogs", "", ip or "<null>", identity, "", rng, operation=activity)
    del rec["resultType"]  # directory audit records carry no resultType
    del rec["location"]
    rec["correlationId"] = corr
    rec["properties"] = {
        "id": f"{service.replace(' ', '')}_{new_uuid(rng).replace('-', '')[:20]}",
        "category": category,
        "correlationId": corr,
        "result": "success",
        "resultReason": "",
        "activityDisplayName": activity,
        "activityDateTime": f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}+00:00",
        "loggedByService": service,
        "operationType": operation_type,
        "initiatedBy": initiator,
        "targetResources": targets,
        "additionalDetails": [],
    }
    stream = rec["resourceId"].lower() + "/auditlogs"
    return Emitted(t, stream, "directory", rec)


def directory_traffic(
    pop: Population, plan: ScenarioPlan, rng: random.Random, budget: int
) -> list[Emitted]:
    pim_app: dict[str, Any] = {
        "app": {
            "appId": None,
            "displayName": "MS-PIM",
            "servicePrincipalId": new_uuid(rng),
            "servicePrincipalName": None,
        }
    }
    out: list[Emitted] = []
    for _ in range(budget * 10):
        if len(out) >= budget:
            break
        t = sample_time(rng, plan.start, tail=timedelta(hours=2))
        admin = rng.choice(pop.admins)
        if plan.busy(admin.oid, t, timedelta(hours=2)):
            continue
        user: dict[str, Any] = {
            "user": {
                "id": admin.oid,
                "displayName": None,
                "userPrincipalName": admin.upn,
                "ipAddress": _where(admin)[0],
            }
        }
        if rng.random() < 0.6:  # a just-in-time activation and its expiry
            role, template = rng.choice(_ROLES)
            corr = new_uuid(rng)
            role_id = new_uuid(rng)
            target_user: dict[str, Any] = {
                "id": admin.oid,
                "displayName": admin.name,
                "type": "User",
                "userPrincipalName": admin.upn,
                "modifiedProperties": [],
            }
            role_target: dict[str, Any] = {
                "id": role_id,
                "displayName": role,
                "type": "Role",
                "modifiedProperties": [
                    _prop("Role.DisplayName", role),
                    _prop("Role.TemplateId", template),
                ],
            }
            out.append(
                directory_record(
                    pop,
                    t,
                    "Add member to role requested (PIM activation)",
                    "PIM",
                    "RoleManagement",
                    user,
                    [role_target, target_user],
                    rng,
                    corr=corr,
                    operation_type="Assign",
                    ip=_where(admin)[0],
                )
            )
            t += timedelta(seconds=rng.uniform(2, 20))
            out.append(
                directory_record(
                    pop,
                    t,
                    "Add member to role completed (PIM activation)",
                    "PIM",
                    "RoleManagement",
                    user,
                    [role_target, target_user],
                    rng,
                    corr=corr,
                    operation_type="Assign",
                    ip=_where(admin)[0],
                )
            )
            core_target: dict[str, Any] = {
                "id": admin.oid,
                "displayName": None,
                "type": "User",
                "userPrincipalName": admin.upn,
                "modifiedProperties": [
                    _prop("Role.ObjectID", role_id),
                    _prop("Role.DisplayName", role),
                    _prop("Role.TemplateId", template),
                    _prop("Role.WellKnownObjectName", role.replace(" ", "")),
                ],
            }
            out.append(
                directory_record(
                    pop,
                    t + timedelta(seconds=1),
                    "Add member to role",
                    "Core Directory",
                    "RoleManagement",
                    pim_app,
                    [core_target],
                    rng,
                    corr=corr,
                    operation_type="Assign",
                    ip=None,
                )
            )
            end = t + timedelta(hours=rng.choice((1, 2)))
            out.append(
                directory_record(
                    pop,
                    end,
                    "Remove member from role",
                    "Core Directory",
                    "RoleManagement",
                    pim_app,
                    [core_target],
                    rng,
                    corr=new_uuid(rng),
                    operation_type="Unassign",
                    ip=None,
                )
            )
        else:  # helpdesk work on ordinary accounts
            who = rng.choice(pop.clinicians[10:])
            activity, prop = rng.choice(
                (
                    ("Update user", _prop("TelephoneNumber", "+1 617 555 0100", "+1 617 555 0199")),
                    ("Reset user password", _prop("PasswordPolicies", None)),
                    ("Add member to group", _prop("Group.DisplayName", "Clinical-Staff-4North")),
                )
            )
            target: dict[str, Any] = {
                "id": who.oid,
                "displayName": None,
                "type": "User",
                "userPrincipalName": who.upn,
                "modifiedProperties": [prop],
            }
            category = "GroupManagement" if "group" in activity else "UserManagement"
            out.append(
                directory_record(
                    pop,
                    t,
                    activity,
                    "Core Directory",
                    category,
                    user,
                    [target],
                    rng,
                    corr=new_uuid(rng),
                    operation_type="Update",
                    ip=_where(admin)[0],
                )
            )
    return out
