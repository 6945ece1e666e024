// FHIR service (Azure Health Data Services workspace) AuditLogs -> the phiwatch hub.

@description('Name of the Health Data Services workspace.')
param workspaceName string

@description('Name of the FHIR service in that workspace.')
param name string

param eventHubAuthorizationRuleId string
param eventHubName string = 'diagnostics'
param settingName string = 'phiwatch'

resource workspace 'Microsoft.HealthcareApis/workspaces@2024-03-31' existing = {
  name: workspaceName
}

resource fhir 'Microsoft.HealthcareApis/workspaces/fhirservices@2024-03-31' existing = {
  parent: workspace
  name: name
}

resource setting 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: fhir
  properties: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    logs: [
      {
        category: 'AuditLogs'
        enabled: true
      }
    ]
  }
}
