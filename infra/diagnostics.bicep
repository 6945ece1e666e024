// Route the monitored resources' logs to the phiwatch hub (`diagnostics`). Subscription scope.
//
//   az deployment sub create --location <region> -f infra/diagnostics.bicep \
//     -p @infra/diagnostics.parameters.example.json
//
// | Source                         | Log category                         | Scope of the setting            |
// |--------------------------------|--------------------------------------|---------------------------------|
// | Key Vault                      | AuditEvent                           | each vault (keyVaultIds)        |
// | FHIR service (Health Data Services) | AuditLogs                       | each FHIR service (fhirServiceIds) |
// | Azure API for FHIR             | AuditLogs                            | each service (apiForFhirIds)    |
// | Azure SQL (server-level audit) | SQLSecurityAuditEvents               | each server's master database (sqlServerIds) |
// | Storage (blob service)         | StorageRead, StorageWrite, StorageDelete | each account's blob service (storageAccountIds) |
// | Activity Log                   | Administrative (activityLogCategories) | this subscription             |
// | Entra ID                       | SignInLogs, NonInteractiveUserSignInLogs, ServicePrincipalSignInLogs, ManagedIdentitySignInLogs, AuditLogs | the tenant (includeEntraSignInLogs; see diagnostics-entra.bicep) |
//
// Every category listed is one phiwatch normalises; nothing else is enabled (anything else
// would be archived and dead-lettered as unknown-category).
//
// configureSqlAuditing=true (the default) REPLACES each listed SQL server's existing auditing
// policy (its targets, action groups and retention) with phiwatch's: set it to false when a
// server already audits, and enable that policy's Azure Monitor target yourself.
//
// Resources may be in any resource group of any subscription the deploying identity can
// write diagnostic settings in (Monitoring Contributor there, plus
// Microsoft.EventHub/namespaces/authorizationRules/listkeys/action on the phiwatch rule,
// which Azure checks when a setting names it). Regional resources can only stream to an
// Event Hubs namespace in their own region. The Activity Log is per subscription: deploy this
// file once per subscription (with empty resource lists in the others if need be).
//
// Do not list phiwatch's own Key Vault or storage accounts: their logs would loop back
// through the hub (main.bicep already sends them to Log Analytics).

targetScope = 'subscription'

@description('Namespace-level Send authorization rule of the phiwatch namespace (main.bicep output diagnosticsEventHubAuthorizationRuleId).')
param eventHubAuthorizationRuleId string

@description('The phiwatch hub that normalize reads (main.bicep output eventHubName). Never phi-events: that hub carries normalised events only, written by phiwatch.')
param eventHubName string = 'diagnostics'

@description('Name of every diagnostic setting this creates (a resource can have at most 5).')
param settingName string = 'phiwatch'

@description('Resource ids of Key Vaults (Microsoft.KeyVault/vaults).')
param keyVaultIds array = []

@description('Resource ids of FHIR services (Microsoft.HealthcareApis/workspaces/fhirservices).')
param fhirServiceIds array = []

@description('Resource ids of Azure API for FHIR services (Microsoft.HealthcareApis/services).')
param apiForFhirIds array = []

@description('Resource ids of logical SQL servers (Microsoft.Sql/servers); server-level auditing, all databases.')
param sqlServerIds array = []

@description('Write each SQL server\'s auditing policy (Enabled, Azure Monitor target). This REPLACES an existing server auditing policy; false = only add the diagnostic setting (see modules/diagnostics/sql.bicep).')
param configureSqlAuditing bool = true

@description('Resource ids of storage accounts (Microsoft.Storage/storageAccounts) whose blob logs to stream.')
param storageAccountIds array = []

@description('Stream this subscription\'s Activity Log.')
param includeActivityLog bool = true

@description('Activity Log categories. phiwatch normalises Administrative; it skips Security, ServiceHealth, Alert, Recommendation, Policy, Autoscale and ResourceHealth.')
param activityLogCategories array = [
  'Administrative'
]

@description('Also create the tenant-scope Entra ID sign-in log setting (diagnostics-entra.bicep). Needs tenant-root deployment rights and an Entra role; see infra/README.md.')
param includeEntraSignInLogs bool = false

@description('Entra log categories (includeEntraSignInLogs): the ones phiwatch normalises.')
param entraLogCategories array = [
  'SignInLogs'
  'NonInteractiveUserSignInLogs'
  'ServicePrincipalSignInLogs'
  'ManagedIdentitySignInLogs'
  'AuditLogs'
]

// /subscriptions/<sub>/resourceGroups/<rg>/providers/<namespace>/<type>/<name>[/<type>/<name>]
// split on '/': [2] subscription, [4] resource group, [8] name, [10] child name.

module keyVaults 'modules/diagnostics/keyvault.bicep' = [
  for id in keyVaultIds: {
    name: 'phiwatch-diag-kv-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      name: split(id, '/')[8]
      eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
      eventHubName: eventHubName
      settingName: settingName
    }
  }
]

module fhirServices 'modules/diagnostics/fhir.bicep' = [
  for id in fhirServiceIds: {
    name: 'phiwatch-diag-fhir-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      workspaceName: split(id, '/')[8]
      name: split(id, '/')[10]
      eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
      eventHubName: eventHubName
      settingName: settingName
    }
  }
]

module apisForFhir 'modules/diagnostics/apiforfhir.bicep' = [
  for id in apiForFhirIds: {
    name: 'phiwatch-diag-apifhir-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      name: split(id, '/')[8]
      eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
      eventHubName: eventHubName
      settingName: settingName
    }
  }
]

module sqlServers 'modules/diagnostics/sql.bicep' = [
  for id in sqlServerIds: {
    name: 'phiwatch-diag-sql-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      serverName: split(id, '/')[8]
      configureAuditing: configureSqlAuditing
      eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
      eventHubName: eventHubName
      settingName: settingName
    }
  }
]

module storageAccounts 'modules/diagnostics/storage.bicep' = [
  for id in storageAccountIds: {
    name: 'phiwatch-diag-st-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      name: split(id, '/')[8]
      eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
      eventHubName: eventHubName
      settingName: settingName
    }
  }
]

// The subscription's Activity Log (a subscription-scope diagnostic setting).
resource activityLog 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (includeActivityLog) {
  name: settingName
  properties: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    logs: [
      for category in activityLogCategories: {
        category: category
        enabled: true
      }
    ]
  }
}

module entra 'diagnostics-entra.bicep' = if (includeEntraSignInLogs) {
  name: 'phiwatch-diag-entra'
  scope: tenant()
  params: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    settingName: settingName
    categories: entraLogCategories
  }
}
