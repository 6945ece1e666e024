// The Sentinel analytic rule that turns PhiAlerts_CL rows into alerts and incidents.
//
// The rule is defined once, in ../../kql/phiwatch-alerts-incident.yaml (Sentinel analytic-rule
// template format, design notes at its top); this file loads it with loadYamlContent() and maps
// the template fields onto Microsoft.SecurityInsights/alertRules (kind Scheduled):
//   name -> displayName, relevantTechniques -> techniques, '5m' -> 'PT5M', 'gt' -> 'GreaterThan'.
// The template's `id` is the rule's resource name, so redeploying updates the same rule.
// The template durations are minutes or hours only (tests/test_sentinel_schema.py checks it),
// which is what the 'PT' + upper-case conversion below supports.
// Deploy in the workspace's resource group, after the tables (the query must compile).

@description('Name of the existing Log Analytics workspace that Microsoft Sentinel uses.')
param workspaceName string

@description('Create the rule enabled.')
param enabled bool = true

@description('Also onboard Microsoft Sentinel on the workspace (skip when it is already enabled).')
param onboardSentinel bool = false

var template = loadYamlContent('../../kql/phiwatch-alerts-incident.yaml')
var triggerOperators = {
  gt: 'GreaterThan'
  lt: 'LessThan'
  eq: 'Equal'
  ne: 'NotEqual'
}
var grouping = template.incidentConfiguration.groupingConfiguration

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
}

resource sentinel 'Microsoft.SecurityInsights/onboardingStates@2023-02-01' = if (onboardSentinel) {
  scope: workspace
  name: 'default'
  properties: {}
}

resource rule 'Microsoft.SecurityInsights/alertRules@2023-02-01' = {
  scope: workspace
  name: template.id
  kind: 'Scheduled'
  dependsOn: [
    sentinel
  ]
  properties: {
    displayName: template.name
    description: template.description
    severity: template.severity
    enabled: enabled
    query: template.query
    queryFrequency: 'PT${toUpper(template.queryFrequency)}'
    queryPeriod: 'PT${toUpper(template.queryPeriod)}'
    triggerOperator: triggerOperators[template.triggerOperator]
    triggerThreshold: template.triggerThreshold
    suppressionEnabled: template.suppressionEnabled
    suppressionDuration: 'PT${toUpper(template.suppressionDuration)}'
    tactics: template.tactics
    techniques: template.relevantTechniques
    entityMappings: template.entityMappings
    customDetails: template.customDetails
    alertDetailsOverride: template.alertDetailsOverride
    eventGroupingSettings: template.eventGroupingSettings
    incidentConfiguration: {
      createIncident: template.incidentConfiguration.createIncident
      groupingConfiguration: {
        enabled: grouping.enabled
        reopenClosedIncident: grouping.reopenClosedIncident
        lookbackDuration: 'PT${toUpper(grouping.lookbackDuration)}'
        matchingMethod: grouping.matchingMethod
        groupByEntities: grouping.groupByEntities
        groupByAlertDetails: grouping.groupByAlertDetails
        groupByCustomDetails: grouping.groupByCustomDetails
      }
    }
  }
}

output ruleId string = rule.id
output ruleName string = template.name
