"""MITRE ATT&CK (enterprise) tactics of the techniques phiwatch rules name, in Sentinel's
tactic spelling. `rules lint` requires every technique of a rule to belong to one of the
rule's tactics, and refuses a technique not listed here: add it, with all its tactics from
attack.mitre.org, when a rule needs it.
"""

from __future__ import annotations

# The tactic names Sentinel accepts in `tactics` (ATT&CK enterprise, plus ICS and PreAttack).
TACTICS = frozenset(
    {
        "Reconnaissance",
        "ResourceDevelopment",
        "InitialAccess",
        "Execution",
        "Persistence",
        "PrivilegeEscalation",
        "DefenseEvasion",
        "CredentialAccess",
        "Discovery",
        "LateralMovement",
        "Collection",
        "Exfiltration",
        "CommandAndControl",
        "Impact",
        "ImpairProcessControl",
        "InhibitResponseFunction",
        "PreAttack",
    }
)

TECHNIQUE_TACTICS: dict[str, frozenset[str]] = {
    # used by phiwatch's rules and detections
    "T1213": frozenset({"Collection"}),  # Data from Information Repositories
    "T1530": frozenset({"Collection"}),  # Data from Cloud Storage
    "T1555": frozenset({"CredentialAccess"}),  # Credentials from Password Stores
    "T1562": frozenset({"DefenseEvasion"}),  # Impair Defenses
    "T1565": frozenset({"Impact"}),  # Data Manipulation
    "T1580": frozenset({"Discovery"}),  # Cloud Infrastructure Discovery
    # common in cloud and identity rules
    "T1020": frozenset({"Exfiltration"}),  # Automated Exfiltration
    "T1070": frozenset({"DefenseEvasion"}),  # Indicator Removal
    "T1078": frozenset(  # Valid Accounts
        {"DefenseEvasion", "Persistence", "PrivilegeEscalation", "InitialAccess"}
    ),
    "T1098": frozenset({"Persistence", "PrivilegeEscalation"}),  # Account Manipulation
    "T1110": frozenset({"CredentialAccess"}),  # Brute Force
    "T1485": frozenset({"Impact"}),  # Data Destruction
    "T1526": frozenset({"Discovery"}),  # Cloud Service Discovery
    "T1528": frozenset({"CredentialAccess"}),  # Steal Application Access Token
    "T1537": frozenset({"Exfiltration"}),  # Transfer Data to Cloud Account
    "T1552": frozenset({"CredentialAccess"}),  # Unsecured Credentials
    "T1567": frozenset({"Exfiltration"}),  # Exfiltration Over Web Service
}
