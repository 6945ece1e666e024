// The phiwatch Function App on the Flex Consumption plan (FC1), Python 3.11, with a
// system-assigned managed identity and identity-based connections only: no connection string
// with a key, no storage key, no SAS anywhere in its settings.
//
// - Two stages, one app: `normalize` (trigger: the diagnostics hub) publishes every
//   normalised event to the phi-events hub (azure-eventhub producer, DefaultAzureCredential,
//   PHIWATCH_PHI_EVENTS_NAMESPACE); `detect` (trigger: phi-events) keeps its state per
//   partition in PHIWATCH_STATE_URL. The hubs are in two namespaces (phi-events' refuses
//   SAS; eventhubs.bicep), so each trigger has its own identity connection: `normalize`
//   EVENTHUB -> EVENTHUB__fullyQualifiedNamespace, `detect` PHIEVENTS ->
//   PHIEVENTS__fullyQualifiedNamespace. PHIWATCH_PHI_EVENTS_NAMESPACE (normalize's producer)
//   is set from the same parameter as PHIEVENTS so they cannot diverge.
// - Flex Consumption scales each Event Hubs function on its own (per-function scaling): at
//   most one instance per partition of its hub. maximumInstanceCount bounds the app, so keep
//   it at least the sum of both hubs' partition counts plus a few (HTTP, timer).
// - Host storage (AzureWebJobsStorage__accountName) and the deployment package container
//   (functionAppConfig.deployment.storage) by identity.
// - Archive, outbox and state by URL (the app uses DefaultAzureCredential).
// - PHIWATCH_PSEUDONYM_KEY is a Key Vault reference pinned to one secret version
//   (keyvault.bicep), resolved by the platform with the identity; PHIWATCH_ARCHIVE_SIGNING_KEY_URL is a Key Vault key the app signs through.
// - Application Insights with local authentication disabled: telemetry is accepted only with
//   an Entra ID token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD). Its
//   connection string carries an instrumentation key that is an identifier, not a secret,
//   once local auth is off.
// - FUNCTIONS_WORKER_RUNTIME is NOT an app setting: Flex Consumption rejects it (and
//   FUNCTIONS_EXTENSION_VERSION); the runtime is functionAppConfig.runtime (python 3.11).
//
// The role assignments the identity needs are in roles.bicep.

@description('Function App name (also the default host name).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Application Insights component name.')
param appInsightsName string

param location string

@description('Log Analytics workspace for Application Insights and the Function App diagnostic settings.')
param workspaceResourceId string

@description('Host storage account (AzureWebJobsStorage by identity).')
param hostStorageAccountName string

@description('URL of the blob container that holds the deployment package.')
param deploymentContainerUrl string

@description('<namespace>.servicebus.windows.net of the diagnostics hub (EVENTHUB connection).')
param eventHubFullyQualifiedNamespace string

@description('<namespace>.servicebus.windows.net of the phi-events hub (PHIEVENTS connection, PHIWATCH_PHI_EVENTS_NAMESPACE).')
param phiEventsFullyQualifiedNamespace string

@description('PHIWATCH_EVENTHUB_NAME')
param eventHubName string = 'diagnostics'

@description('PHIWATCH_EVENTHUB_CONSUMER_GROUP')
param consumerGroupName string = 'phiwatch'

@description('PHIWATCH_PHI_EVENTS_HUB: the hub normalize publishes to and detect reads.')
param phiEventsHubName string = 'phi-events'

@description('PHIWATCH_PHI_EVENTS_CONSUMER_GROUP: the consumer group detect reads phi-events with.')
param phiEventsConsumerGroupName string = 'phiwatch'

@description('PHIWATCH_STATE_URL: the mutable container of detect\'s per-partition state snapshots.')
param stateUrl string

@description('PHIWATCH_ARCHIVE_URL: the immutable archive container.')
param archiveUrl string

@description('PHIWATCH_OUTBOX_URL: the mutable outbox container.')
param outboxUrl string

@description('PHIWATCH_ROSTER_URL: the workforce roster blob in the privacy container, or empty for none (docs/privacy.md).')
param rosterUrl string = ''

@description('PHIWATCH_PATIENTS_URL: the patient index blob in the privacy container, or empty for none.')
param patientsUrl string = ''

@description('PHIWATCH_PSEUDONYM_KEY: the Key Vault reference pinned to a secret version (keyvault.bicep output), or empty before the key is set.')
param pseudonymKeyReference string

@description('PHIWATCH_ARCHIVE_IMMUTABILITY_LOCKED: whether the archive retention policy has been locked (main.bicep archiveImmutabilityLocked). The Blob data plane does not say whether a container policy is locked; health and the startup warning report `unlocked` from this.')
param archiveImmutabilityLocked bool = false

@description('PHIWATCH_ARCHIVE_SIGNING_KEY_URL: the Key Vault EC P-256 key (versionless URL).')
param signingKeyUrl string

@description('PHIWATCH_DCR_ENDPOINT (infra/sentinel output logsIngestionEndpoint).')
param dcrEndpoint string

@description('PHIWATCH_DCR_IMMUTABLE_ID (infra/sentinel output dcrImmutableId).')
param dcrImmutableId string

@description('PHIWATCH_LOG_LEVEL')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

@description('PHIWATCH_EVENTHUB_GENERATION: bump (1, 2, ...) when the diagnostics hub is re-created or fails over (Geo-DR)')
param eventHubGeneration string = ''

@description('Flex Consumption: upper bound of the app\'s instances (40-1000). normalize and detect scale separately, each to at most one instance per partition of its hub: keep this at least the sum of both partition counts plus a few for the HTTP and timer functions.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption: memory per instance in MB (billed as GB-seconds).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

param tags object = {}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // checkov:skip=CKV_AZURE_225: Zone redundancy for Flex Consumption exists only in some regions; an outage only delays processing (events wait in the hub for up to 7 days and the app resumes from its checkpoints).
    reserved: true
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspaceResourceId
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}


resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    // checkov:skip=CKV_AZURE_17: Client certificates would protect nothing here: the only HTTP function is /api/health, behind a function key; every other trigger pulls from Event Hubs or runs on a timer.
    // checkov:skip=CKV_AZURE_222: No VNet in this deployment (infra/README.md, Network exposure): the app has no HTTP API beyond /api/health (function key), and its triggers pull (Event Hubs, timer), so public inbound access exposes nothing else.
    // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero; always-ready instances would bill around the clock. Nothing is lost while an instance starts: events wait in the hub (7-day retention) and the app resumes from its checkpoints.
    // checkov:skip=CKV_AZURE_213: The platform health check recycles instances that fail one path; /api/health answers 503 for a misconfiguration or an unreachable archive/state store, which a recycle cannot fix, so it would only cause churn (and it needs a function key). The alerts in alerts.bicep watch failures, lag and the outbox instead.
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // Host storage by identity (Flex Consumption): no AzureWebJobsStorage connection string.
        {
          name: 'AzureWebJobsStorage__accountName'
          value: hostStorageAccountName
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        // Event Hubs trigger connection "EVENTHUB" (normalize, the diagnostics hub) by identity.
        {
          name: 'EVENTHUB__fullyQualifiedNamespace'
          value: eventHubFullyQualifiedNamespace
        }
        {
          name: 'EVENTHUB__credential'
          value: 'managedidentity'
        }
        // Trigger connection "PHIEVENTS" (detect, the phi-events hub in its SAS-less namespace).
        {
          name: 'PHIEVENTS__fullyQualifiedNamespace'
          value: phiEventsFullyQualifiedNamespace
        }
        {
          name: 'PHIEVENTS__credential'
          value: 'managedidentity'
        }
        {
          name: 'PHIWATCH_EVENTHUB_NAME'
          value: eventHubName
        }
        {
          name: 'PHIWATCH_EVENTHUB_CONSUMER_GROUP'
          value: consumerGroupName
        }
        // Stage two: normalize publishes to phi-events (identity, the PHIEVENTS namespace);
        // detect reads it and keeps its state per partition in the state container.
        {
          name: 'PHIWATCH_PHI_EVENTS_HUB'
          value: phiEventsHubName
        }
        {
          name: 'PHIWATCH_PHI_EVENTS_NAMESPACE'
          value: phiEventsFullyQualifiedNamespace
        }
        {
          name: 'PHIWATCH_PHI_EVENTS_CONSUMER_GROUP'
          value: phiEventsConsumerGroupName
        }
        {
          name: 'PHIWATCH_STATE_URL'
          value: stateUrl
        }
        {
          name: 'PHIWATCH_ARCHIVE_URL'
          value: archiveUrl
        }
        {
          name: 'PHIWATCH_ARCHIVE_REQUIRE_IMMUTABILITY'
          value: 'true'
        }
        {
          name: 'PHIWATCH_ARCHIVE_IMMUTABILITY_LOCKED'
          value: archiveImmutabilityLocked ? 'true' : 'false'
        }
        {
          name: 'PHIWATCH_OUTBOX_URL'
          value: outboxUrl
        }
        // The privacy inputs, read with the identity (Storage Blob Data Reader on their
        // container); empty is unset: the rules that need an input stay off and say so.
        {
          name: 'PHIWATCH_ROSTER_URL'
          value: rosterUrl
        }
        {
          name: 'PHIWATCH_PATIENTS_URL'
          value: patientsUrl
        }
        {
          name: 'PHIWATCH_PSEUDONYM_KEY'
          value: pseudonymKeyReference
        }
        {
          name: 'PHIWATCH_ALLOW_GENERATED_KEY'
          value: 'false'
        }
        {
          name: 'PHIWATCH_ARCHIVE_SIGNING_KEY_URL'
          value: signingKeyUrl
        }
        {
          name: 'PHIWATCH_DCR_ENDPOINT'
          value: dcrEndpoint
        }
        {
          name: 'PHIWATCH_DCR_IMMUTABLE_ID'
          value: dcrImmutableId
        }
        {
          name: 'PHIWATCH_LOG_LEVEL'
          value: logLevel
        }
        {
          name: 'PHIWATCH_EVENTHUB_GENERATION'
          value: eventHubGeneration
        }
        // Entra ID-only telemetry (the component has local auth disabled).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'Authorization=AAD'
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// The Function App's own logs (host and function logs) in Log Analytics.
resource siteDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'phiwatch-functionapp'
  scope: site
  properties: {
    workspaceId: workspaceResourceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output name string = site.name
output id string = site.id
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
output appInsightsName string = appInsights.name
