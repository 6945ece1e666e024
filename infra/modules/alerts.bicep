// Azure Monitor alerts on phiwatch itself, each notifying `actionGroupId` (an existing action
// group: e-mail, SMS, ITSM, a Sentinel automation...). What each one means and what to do:
// infra/README.md, "Troubleshooting".
//
// - function failures: failed executions (Application Insights `requests` with
//   success == false, which includes every retried normalize/detect batch) and exceptions,
//   per function.
// - consumer lag: the largest `lag_seconds` (now minus the newest enqueued time of a batch)
//   that normalize ("eventhub batch processed") and detect ("detect invocation processed")
//   log, above `lagSeconds`.
// - outbox backlog: the `remaining` entries the outbox timer logs ("outbox delivery") above
//   `outboxEntries`: Sentinel is refusing or unreachable and rows pile up.
// - stalled hub: per namespace, events arrive (IncomingMessages) but none are read
//   (OutgoingMessages) for 30 minutes: a partition retrying one batch forever, the app
//   stopped, or a role missing.
//
// The log alerts query the Application Insights component (its `requests`, `exceptions` and
// `traces`, the JSON lines phiwatch.logs writes); the hub alerts use Event Hubs platform
// metrics. Empty `actionGroupId`: the alerts still fire (Azure Monitor, the portal) but
// notify nobody.

@description('Prefix of the alert names.')
param baseName string

param location string

param tags object = {}

@description('Resource id of the action group the alerts notify; empty = none.')
param actionGroupId string = ''

@description('Application Insights component of the Function App.')
param appInsightsName string

@description('The diagnostics Event Hubs namespace.')
param eventHubNamespaceName string

@description('The phi-events Event Hubs namespace.')
param phiEventsNamespaceName string

@description('Consumer lag in seconds above which the lag alert fires.')
@minValue(60)
param lagSeconds int = 900

@description('Outbox entries waiting for Sentinel above which the backlog alert fires.')
@minValue(1)
param outboxEntries int = 50

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource phiEventsNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: phiEventsNamespaceName
}

var logActions = {
  actionGroups: empty(actionGroupId) ? [] : [
    actionGroupId
  ]
}

var metricActions = empty(actionGroupId) ? [] : [
  {
    actionGroupId: actionGroupId
  }
]

resource functionFailures 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${baseName}-function-failures'
  location: location
  tags: tags
  properties: {
    displayName: 'phiwatch: function failures'
    description: 'A phiwatch function failed (a batch that raises is retried until it succeeds: repeated failures are a stalled partition). infra/README.md, Troubleshooting.'
    severity: 1
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'union (requests | where success == false | project operation_Name), (exceptions | project operation_Name) | summarize failures = count() by operation_Name'
          timeAggregation: 'Total'
          metricMeasureColumn: 'failures'
          dimensions: [
            {
              name: 'operation_Name'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: logActions
  }
}

resource consumerLag 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${baseName}-consumer-lag'
  location: location
  tags: tags
  properties: {
    displayName: 'phiwatch: consumer lag'
    description: 'normalize or detect runs more than the configured lag behind its hub (lag_seconds). infra/README.md, Troubleshooting.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message has "lag_seconds" | extend entry = parse_json(message) | where tostring(entry.event) in ("eventhub batch processed", "detect invocation processed") | summarize lag_seconds = max(todouble(entry.lag_seconds)) by stage = tostring(entry.event)'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'lag_seconds'
          dimensions: [
            {
              name: 'stage'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: lagSeconds
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: logActions
  }
}

resource outboxBacklog 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${baseName}-outbox-backlog'
  location: location
  tags: tags
  properties: {
    displayName: 'phiwatch: Sentinel outbox backlog'
    description: 'Rows Sentinel has not accepted are piling up in the outbox (remaining entries after a delivery run). infra/README.md, Troubleshooting.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT30M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message has "outbox delivery" | extend entry = parse_json(message) | where tostring(entry.event) == "outbox delivery" | summarize remaining = max(toint(entry.remaining))'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'remaining'
          operator: 'GreaterThan'
          threshold: outboxEntries
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: logActions
  }
}

// One per namespace: events in, none out, for 30 minutes.
resource diagnosticsStalled 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${baseName}-diagnostics-hub-stalled'
  location: 'global'
  tags: tags
  properties: {
    description: 'Events reach the diagnostics hub but normalize reads none (stalled partition, app stopped, role missing). infra/README.md, Troubleshooting.'
    severity: 1
    enabled: true
    scopes: [
      eventHubNamespace.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT30M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'incoming'
          metricName: 'IncomingMessages'
          metricNamespace: 'Microsoft.EventHub/namespaces'
          timeAggregation: 'Total'
          operator: 'GreaterThan'
          threshold: 0
        }
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'outgoing'
          metricName: 'OutgoingMessages'
          metricNamespace: 'Microsoft.EventHub/namespaces'
          timeAggregation: 'Total'
          operator: 'LessThan'
          threshold: 1
        }
      ]
    }
    autoMitigate: true
    actions: metricActions
  }
}

resource phiEventsStalled 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${baseName}-phi-events-hub-stalled'
  location: 'global'
  tags: tags
  properties: {
    description: 'normalize publishes to phi-events but detect reads nothing (stalled detect partition, app stopped, role missing). infra/README.md, Troubleshooting.'
    severity: 1
    enabled: true
    scopes: [
      phiEventsNamespace.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT30M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'incoming'
          metricName: 'IncomingMessages'
          metricNamespace: 'Microsoft.EventHub/namespaces'
          timeAggregation: 'Total'
          operator: 'GreaterThan'
          threshold: 0
        }
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'outgoing'
          metricName: 'OutgoingMessages'
          metricNamespace: 'Microsoft.EventHub/namespaces'
          timeAggregation: 'Total'
          operator: 'LessThan'
          threshold: 1
        }
      ]
    }
    autoMitigate: true
    actions: metricActions
  }
}

output alertNames array = [
  functionFailures.name
  consumerLag.name
  outboxBacklog.name
  diagnosticsStalled.name
  phiEventsStalled.name
]
