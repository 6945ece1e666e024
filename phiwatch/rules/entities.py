"""Sentinel entity types and the identifiers an entity mapping may use
(learn.microsoft.com/azure/sentinel/entities-reference)."""

from __future__ import annotations

ENTITY_IDENTIFIERS: dict[str, frozenset[str]] = {
    "Account": frozenset(
        {
            "Name",
            "FullName",
            "NTDomain",
            "DnsDomain",
            "UPNSuffix",
            "Sid",
            "AadTenantId",
            "AadUserId",
            "PUID",
            "IsDomainJoined",
            "DisplayName",
            "ObjectGuid",
            "CloudAppAccountId",
        }
    ),
    "Host": frozenset(
        {
            "DnsDomain",
            "NTDomain",
            "HostName",
            "FullName",
            "NetBiosName",
            "AzureID",
            "OMSAgentID",
            "OSFamily",
            "OSVersion",
            "IsDomainJoined",
        }
    ),
    "IP": frozenset({"Address", "AddressScope"}),
    "URL": frozenset({"Url"}),
    "AzureResource": frozenset({"ResourceId"}),
    "CloudApplication": frozenset({"AppId", "Name", "InstanceName"}),
    "DNS": frozenset({"DomainName"}),
    "File": frozenset({"Directory", "Name"}),
    "FileHash": frozenset({"Algorithm", "Value"}),
    "Process": frozenset({"ProcessId", "CommandLine", "ElevationToken", "CreationTimeUtc"}),
    "Mailbox": frozenset(
        {"MailboxPrimaryAddress", "DisplayName", "Upn", "ExternalDirectoryObjectId", "RiskLevel"}
    ),
    "MailMessage": frozenset({"Recipient", "Sender", "Subject", "NetworkMessageId"}),
    "SecurityGroup": frozenset({"DistinguishedName", "SID", "ObjectGuid"}),
    "RegistryKey": frozenset({"Hive", "Key"}),
    "RegistryValue": frozenset({"Name", "Value", "ValueType"}),
    "Malware": frozenset({"Name", "Category"}),
}
