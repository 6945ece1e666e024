"""Static facts about the fictional Contoso Health tenant: names, principals, vaults, resources."""

from __future__ import annotations

DOMAIN = "contoso-health.org"

# Well-known first-party public clients: admins really do show up with these app ids.
AZURE_CLI_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
AZURE_PORTAL_APP_ID = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c"
CLI_AGENT = "AzureCLI/2.66.0 azsdk-python-keyvault-secrets/4.8.0 Python/3.11.9 (Windows-10)"
BROWSER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Edg/130.0"
)

FIRST_NAMES = (
    "amelia", "oliver", "isla", "noah", "ava", "leo", "mia", "arthur", "grace", "oscar", "freya",
    "henry", "ivy", "theo", "lily", "jack", "sophia", "george", "ella", "samuel", "chloe",
    "daniel", "ruby", "lucas", "hannah", "mateo", "zara", "ethan", "nora", "adam", "priya",
    "rahul", "mei", "kenji", "fatima", "omar", "ingrid", "lars", "elena", "marco",
)  # fmt: skip
LAST_NAMES = (
    "smith", "jones", "taylor", "brown", "williams", "wilson", "johnson", "davies", "patel",
    "wright", "walker", "thompson", "white", "hughes", "edwards", "green", "hall", "wood",
    "harris", "lewis", "martin", "jackson", "clarke", "clark", "turner", "hill", "scott",
    "cooper", "morris", "ward", "moore", "king", "watson", "baker", "harrison", "morgan",
    "nguyen", "kowalski", "okafor", "haddad",
)  # fmt: skip

# (name, kind, Key Vault user agent, duties, traffic weight)
PRINCIPALS = (
    ("app-ehr-portal-backend", "sp", "azsdk-net-Security.KeyVault.Secrets/4.6.0",
     ("fhir-search",), 3),
    ("app-hl7-interface", "sp", "azsdk-java-Security.KeyVault.Secrets/4.8.3", ("fhir-search",), 2),
    ("app-fhir-bulk-export", "sp", "azsdk-python-keyvault-secrets/4.8.0", ("fhir-export",), 1),
    ("mi-func-phiwatch", "mi", "azsdk-python-keyvault-keys/4.9.0 Python/3.11.9", (), 3),
    ("mi-sql-tde", "mi", "Microsoft.Azure.KeyVault.Sql/1.0", (), 2),
    ("app-devops-deploy", "sp", "AzurePowerShell/Az.KeyVault 6.2.0", ("arm-deploy",), 1),
)  # fmt: skip

# (name, subscription index, resource group, emits upper-case resourceId?, secrets, keys)
VAULTS = (
    ("kv-phi-prod", 0, "rg-clinical-prod", True,
     ("fhir-client-secret", "hl7-interface-key", "sql-clinical-conn", "ehr-signing-cert-pass",
      "smtp-relay-password", "pacs-api-key", "lab-feed-token", "backup-encryption-pass",
      "sftp-claims-password", "research-deid-salt", "storage-phi-conn", "eventhub-diag-conn",
      "twilio-sms-token", "teams-webhook-url"),
     ("cmk-fhir", "cmk-sql-tde", "archive-signing")),
    ("kv-clinical-apps", 0, "rg-clinical-prod", True,
     ("ehr-db-conn", "fhir-client-secret", "portal-session-key", "notebook-fhir-secret"),
     ("ehr-jwt-signing",)),
    ("kv-shared-platform", 1, "rg-shared-services", False,
     ("eventhub-conn", "devops-deploy-secret", "law-shared-key", "acr-pull-token"),
     ("cmk-storage",)),
)  # fmt: skip

_ST, _SQL = "Microsoft.Storage/storageAccounts", "Microsoft.Sql/servers"
_HC = "Microsoft.HealthcareApis"
_ST_LOGS = ("StorageRead", "StorageWrite", "StorageDelete")
# (kind, subscription index, resource group, provider path, diagnostic log categories)
ARM_RESOURCES = (
    ("storage", 0, "rg-data-platform", f"{_ST}/stphi01", _ST_LOGS),
    ("storage", 0, "rg-data-platform", f"{_ST}/stphiarchive01", _ST_LOGS),
    ("storage", 1, "rg-shared-services", f"{_ST}/stphiscratch02", ()),
    ("sql", 0, "rg-clinical-prod", f"{_SQL}/sql-clinical-prod", ("SQLSecurityAuditEvents",)),
    ("sql", 1, "rg-data-platform", f"{_SQL}/sql-reporting", ("SQLSecurityAuditEvents",)),
    ("func", 1, "rg-security-ops", "Microsoft.Web/sites/func-phiwatch", ("FunctionAppLogs",)),
    ("fhir", 0, "rg-clinical-prod", f"{_HC}/services/fhir-prod", ("AuditLogs",)),
    ("fhir", 0, "rg-clinical-prod", f"{_HC}/workspaces/ahds-prod/fhirservices/fhir-prod2",
     ("AuditLogs",)),
)  # fmt: skip
VAULT_LOGS = ("AuditEvent", "AzurePolicyEvaluationDetails")

# caller -> what it normally does in Key Vault: (vault, operation, object name)
KV_GRANTS = {
    "app-ehr-portal-backend": [("kv-clinical-apps", "SecretGet", "ehr-db-conn"),
                               ("kv-clinical-apps", "SecretGet", "fhir-client-secret"),
                               ("kv-clinical-apps", "KeySign", "ehr-jwt-signing")],
    "app-hl7-interface": [("kv-phi-prod", "SecretGet", "hl7-interface-key"),
                          ("kv-phi-prod", "SecretGet", "fhir-client-secret")],
    "app-fhir-bulk-export": [("kv-phi-prod", "SecretGet", "fhir-client-secret"),
                             ("kv-phi-prod", "SecretGet", "storage-phi-conn")],
    "mi-func-phiwatch": [("kv-phi-prod", "KeySign", "archive-signing"),
                         ("kv-phi-prod", "KeyGet", "archive-signing"),
                         ("kv-shared-platform", "SecretGet", "eventhub-conn")],
    "mi-sql-tde": [("kv-phi-prod", "KeyUnwrap", "cmk-sql-tde"),
                   ("kv-phi-prod", "KeyGet", "cmk-sql-tde"),
                   ("kv-shared-platform", "KeyUnwrap", "cmk-storage")],
    "app-devops-deploy": [("kv-shared-platform", "SecretGet", "devops-deploy-secret"),
                          ("kv-shared-platform", "SecretList", ""),
                          ("kv-clinical-apps", "VaultGet", ""),
                          ("kv-shared-platform", "VaultGet", "")],
    "@admin": [("kv-clinical-apps", "SecretList", ""),
               ("kv-clinical-apps", "SecretGet", "portal-session-key"),
               ("kv-shared-platform", "SecretGet", "acr-pull-token"),
               ("kv-phi-prod", "VaultGet", "")],
    "@analyst": [("kv-clinical-apps", "SecretGet", "notebook-fhir-secret")],
}  # fmt: skip
