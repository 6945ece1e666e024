// Two Event Hubs namespaces (Standard), one per stage of phiwatch:
// - namespace `name`, hub `diagnostics`: every diagnostic setting streams here; the
//   `normalize` function reads it with consumer group `phiwatch` (trigger connection
//   EVENTHUB).
// - namespace `phiEventsNamespaceName`, hub `phi-events`: `normalize` publishes every
//   normalised event here, with the event's routing key as partition key; the `detect`
//   function reads it with its own consumer group `phiwatch` (trigger connection PHIEVENTS)
//   and keeps detection state per partition (PHIWATCH_STATE_URL). Its partition count is the
//   parallelism of `detect` (one instance per partition at most) and, like any partition
//   count on Standard, cannot be lowered after creation.
//
// Why two namespaces: Azure Monitor diagnostic settings can only write to Event Hubs through
// a SAS authorization rule, and only a namespace-level one. Such a rule can send to every hub
// of its namespace, so in a shared namespace anyone holding its key could write forged
// "normalised" events (or watermark ticks) straight into detection's input, never archived
// raw. The phi-events namespace has local (SAS) auth disabled (`disableLocalAuth: true`,
// not a parameter) and no authorization rule: only Entra ID principals with a data role can
// send or read, i.e. the app's managed identity (Data Sender / Data Receiver on that hub,
// roles.bicep).
//
// Authentication of the diagnostics namespace:
// - phiwatch reads `diagnostics` with its managed identity (Data Receiver on the hub); it
//   holds no connection string and no key.
// - The one SAS rule is namespace-level (diagnostic settings require that), Send only, and
//   used only by Azure Monitor: nobody reads its key, no template calls listKeys(). It
//   reaches only `diagnostics`, which is what it is for; a holder can forge raw logs there,
//   and those are archived raw like any other record.
//   `disableLocalAuth: true` would make that namespace refuse the SAS and stop every
//   diagnostic setting from delivering, so it is a parameter (default false); see
//   infra/README.md, "Event Hubs local authentication".
//
// Throughput units are per namespace: the diagnostics namespace carries the raw records, the
// phi-events namespace one event in (the publish) and one out (detect's read) per normalised
// event.
//
// Network: public endpoints, TLS 1.2 minimum. Diagnostic settings deliver as a trusted
// Microsoft service and the Flex Consumption app (without VNet integration) connects over
// the public endpoint; see infra/README.md, "Network exposure".

@description('Name of the Event Hubs namespace.')
param name string

@description('Region. Diagnostic settings of regional resources can only stream to a namespace in the same region.')
param location string

@description('Throughput units (Standard: 1-40). Each is 1 MB/s or 1,000 events/s in, 2 MB/s out; billed per hour.')
@minValue(1)
@maxValue(40)
param throughputUnits int = 1

@description('Let Event Hubs raise the throughput units automatically under load (never lowers them).')
param autoInflate bool = true

@description('Upper bound for auto-inflate (ignored when autoInflate is false).')
@minValue(1)
@maxValue(40)
param maximumThroughputUnits int = 4

@description('Partitions of the diagnostics hub (Standard: 1-32). Fixed after creation on Standard; also the upper bound of parallel Function App instances reading the hub.')
@minValue(1)
@maxValue(32)
param partitionCount int = 4

@description('Days an event stays in the hub (Standard: 1-7): how long phiwatch can be stopped without losing logs.')
@minValue(1)
@maxValue(7)
param messageRetentionInDays int = 7

@description('Refuse SAS (shared key) authentication on the namespace. Azure Monitor diagnostic settings can only deliver with SAS, so true stops log delivery; see infra/README.md.')
param disableLocalAuth bool = false

@description('Name of the hub the diagnostic settings stream to (PHIWATCH_EVENTHUB_NAME).')
param eventHubName string = 'diagnostics'

@description('Consumer group phiwatch reads with (PHIWATCH_EVENTHUB_CONSUMER_GROUP).')
param consumerGroupName string = 'phiwatch'

@description('Name of the phi-events namespace (its own, with local auth disabled: no SAS rule of the diagnostics namespace can write to it).')
param phiEventsNamespaceName string

@description('Throughput units of the phi-events namespace (Standard: 1-40).')
@minValue(1)
@maxValue(40)
param phiEventsThroughputUnits int = 1

@description('Name of the hub `normalize` publishes normalised events to and `detect` reads (PHIWATCH_PHI_EVENTS_HUB).')
param phiEventsHubName string = 'phi-events'

@description('Partitions of the phi-events hub (Standard: 1-32). The parallelism of the detect function: at most one instance per partition, each holding the detection state of its partitions. Fixed after creation on Standard (it can never be lowered), so choose it for the peak audit volume; default: the same as the diagnostics hub.')
@minValue(1)
@maxValue(32)
param phiEventsPartitionCount int = 4

@description('Days a normalised event stays in the phi-events hub (Standard: 1-7): how long detect can be stopped (or stalled retrying) without missing events. Events older than that are still archived and in Sentinel, but no detection sees them.')
@minValue(1)
@maxValue(7)
param phiEventsMessageRetentionInDays int = 7

@description('Consumer group the detect function reads phi-events with (PHIWATCH_PHI_EVENTS_CONSUMER_GROUP). Part of the state blob names: changing it starts detection with empty state.')
param phiEventsConsumerGroupName string = 'phiwatch'

@description('Name of the Send-only authorization rule that diagnostic settings use.')
param diagnosticsRuleName string = 'phiwatch-diagnostics-send'

param tags object = {}

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: throughputUnits
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: disableLocalAuth
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: autoInflate
    maximumThroughputUnits: autoInflate ? maximumThroughputUnits : 0
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: eventHubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroupName
  properties: {
    userMetadata: 'phiwatch Function App (Event Hubs trigger)'
  }
}

// Stage two: normalised events, partitioned by routing key, read by `detect`, in a namespace
// of their own that accepts Entra ID only (see the header). Diagnostic settings must never
// name it (they cannot: they need SAS).
resource phiEventsNamespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: phiEventsNamespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: phiEventsThroughputUnits
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: autoInflate
    maximumThroughputUnits: autoInflate ? maximumThroughputUnits : 0
  }
}

resource phiEventsHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: phiEventsNamespace
  name: phiEventsHubName
  properties: {
    partitionCount: phiEventsPartitionCount
    messageRetentionInDays: phiEventsMessageRetentionInDays
  }
}

resource phiEventsConsumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: phiEventsHub
  name: phiEventsConsumerGroupName
  properties: {
    userMetadata: 'phiwatch detect function (Event Hubs trigger)'
  }
}

// Used only by Azure Monitor diagnostic settings (diagnostics.bicep). Send only: it cannot
// read the hub or manage the namespace.
resource diagnosticsRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = {
  parent: namespace
  name: diagnosticsRuleName
  properties: {
    rights: [
      'Send'
    ]
  }
}

output namespaceName string = namespace.name
output namespaceId string = namespace.id
output eventHubName string = hub.name
output eventHubId string = hub.id
output consumerGroupName string = consumerGroup.name
@description('PHIWATCH_PHI_EVENTS_HUB')
output phiEventsHubName string = phiEventsHub.name
output phiEventsHubId string = phiEventsHub.id
@description('PHIWATCH_PHI_EVENTS_CONSUMER_GROUP')
output phiEventsConsumerGroupName string = phiEventsConsumerGroup.name
@description('Host name for EVENTHUB__fullyQualifiedNamespace (<namespace>.servicebus.windows.net).')
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '//')[1], ':')[0]
output phiEventsNamespaceName string = phiEventsNamespace.name
output phiEventsNamespaceId string = phiEventsNamespace.id
@description('Host name for PHIEVENTS__fullyQualifiedNamespace and PHIWATCH_PHI_EVENTS_NAMESPACE (<namespace>.servicebus.windows.net).')
output phiEventsFullyQualifiedNamespace string = split(split(phiEventsNamespace.properties.serviceBusEndpoint, '//')[1], ':')[0]
@description('eventHubAuthorizationRuleId for diagnostics.bicep.')
output diagnosticsAuthorizationRuleId string = diagnosticsRule.id
