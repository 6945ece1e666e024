// Microsoft Entra ID sign-in and directory audit logs -> the phiwatch hub. Tenant scope.
//
//   az deployment tenant create --location <region> -f infra/diagnostics-entra.bicep \
//     -p eventHubAuthorizationRuleId=<main.bicep output diagnosticsEventHubAuthorizationRuleId>
//
// (or from infra/diagnostics.bicep with includeEntraSignInLogs=true, which deploys this file
// as a tenant-scope module.)
//
// Required: Microsoft Entra ID P1 or P2 (sign-in logs export); the deploying identity must be
// Security Administrator or Global Administrator in Entra ID, AND hold an Azure role at the
// tenant root scope "/" that allows Microsoft.Resources/deployments/write and
// microsoft.aadiam/diagnosticSettings/write (e.g. Owner at "/", which a Global Administrator
// grants after "Elevate access": see infra/README.md). Entra logs are global: the namespace
// may be in any region.

targetScope = 'tenant'

@description('Namespace-level authorization rule (Send) of the phiwatch Event Hubs namespace (main.bicep output diagnosticsEventHubAuthorizationRuleId).')
param eventHubAuthorizationRuleId string

@description('The phiwatch hub that normalize reads (main.bicep output eventHubName). Never phi-events: that hub carries normalised events only, written by phiwatch.')
param eventHubName string = 'diagnostics'

@description('Name of the tenant diagnostic setting.')
param settingName string = 'phiwatch'

// The categories phiwatch normalises, and nothing else: the four sign-in logs (interactive,
// non-interactive, service principal, managed identity) and the directory AuditLogs. Other
// Entra categories (ProvisioningLogs, RiskyUsers, ...) would be archived and dead-lettered
// as unknown-category: paid for and never read.
@description('Entra log categories to stream: the ones phiwatch normalises (the default). Each sign-in category adds volume and cost; non-interactive sign-ins are the largest.')
param categories array = [
  'SignInLogs'
  'NonInteractiveUserSignInLogs'
  'ServicePrincipalSignInLogs'
  'ManagedIdentitySignInLogs'
  'AuditLogs'
]

resource setting 'microsoft.aadiam/diagnosticSettings@2017-04-01' = {
  name: settingName
  properties: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    logs: [
      for category in categories: {
        category: category
        enabled: true
      }
    ]
  }
}
