// Key Vault AuditEvent -> the phiwatch hub (one existing vault, in this resource group).

@description('Name of the existing Key Vault.')
param name string

@description('Namespace-level authorization rule (Send) of the phiwatch Event Hubs namespace.')
param eventHubAuthorizationRuleId string

param eventHubName string = 'diagnostics'
param settingName string = 'phiwatch'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: name
}

resource setting 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: vault
  properties: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}
