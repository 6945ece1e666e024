// Azure API for FHIR (Microsoft.HealthcareApis/services) AuditLogs -> the phiwatch hub.

@description('Name of the Azure API for FHIR service.')
param name string

param eventHubAuthorizationRuleId string
param eventHubName string = 'diagnostics'
param settingName string = 'phiwatch'

resource fhir 'Microsoft.HealthcareApis/services@2023-11-01' existing = {
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
