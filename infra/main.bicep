// phiwatch: everything the Function App needs, in one resource group.
//
//   az deployment group create -g <resource group> -f infra/main.bicep \
//     -p @infra/main.parameters.example.json
//
// Deploys: the Event Hubs namespace with hub `diagnostics` (read by `normalize`) and, in a
// namespace of its own with local (SAS) auth disabled, hub `phi-events` (normalised events,
// written by `normalize`, read by `detect`), each with consumer group `phiwatch`; the Flex Consumption Function App (Python 3.11, system-assigned
// identity, identity-based connections only) with Application Insights and its own
// diagnostic settings; the archive storage account (immutable `phiwatch-archive`, mutable
// `phiwatch-outbox` and `phiwatch-state`, the private `phiwatch-privacy` for the roster and
// patient index); the host storage account; the Key Vault with the
// archive signing key; the Azure Monitor alerts (modules/alerts.bicep); the Sentinel tables, DCR (and optional DCE), analytic rule and workbook
// through infra/sentinel/main.bicep; and the role assignments (modules/roles.bicep). Then
// route the monitored resources' logs to the diagnostics hub with infra/diagnostics.bicep.
// Step by step, with the one-time key commands and the immutability lock decision:
// infra/README.md.

targetScope = 'resourceGroup'

@description('Region of the phiwatch resources. Must be the region of the resources whose logs it monitors (diagnostic settings stream only to an Event Hubs namespace in the same region).')
param location string = resourceGroup().location

@description('Short name used in every resource name (lowercase letters and digits, 3-10).')
@minLength(3)
@maxLength(10)
param baseName string = 'phiwatch'

@description('Tags for every resource.')
param tags object = {
  application: 'phiwatch'
}

// --- Sentinel / Log Analytics (infra/sentinel) ----------------------------------------------

@description('Name of the existing Log Analytics workspace that Microsoft Sentinel uses.')
param workspaceName string

@description('Resource group of the workspace (default: this resource group).')
param workspaceResourceGroup string = resourceGroup().name

@description('Name of the data collection rule (created in this resource group).')
param dcrName string = 'dcr-phiwatch'

@description('Ingest through a Data Collection Endpoint (needed for Azure Monitor Private Link).')
param useDce bool = false

@description('Interactive retention of the phiwatch tables in days (-1 = workspace default).')
@minValue(-1)
@maxValue(730)
param retentionInDays int = 90

@description('Total retention of the phiwatch tables in days (-1 = workspace default).')
@minValue(-1)
@maxValue(4383)
param totalRetentionInDays int = 2192

@description('Deploy the Sentinel analytic rule that creates incidents from PhiAlerts_CL.')
param deployRule bool = true

@description('Onboard Microsoft Sentinel on the workspace (skip when already enabled).')
param onboardSentinel bool = false

@description('Deploy the phiwatch workbook.')
param deployWorkbook bool = true

@description('Log Analytics workspace for Application Insights and the diagnostic settings of phiwatch\'s own resources; empty = the Sentinel workspace.')
param operationsWorkspaceResourceId string = ''

// --- Event Hubs -------------------------------------------------------------------------------

@description('Event Hubs throughput units (Standard, 1-40). The main Event Hubs cost driver.')
@minValue(1)
@maxValue(40)
param eventHubThroughputUnits int = 1

@description('Let Event Hubs raise throughput units under load, up to eventHubMaximumThroughputUnits.')
param eventHubAutoInflate bool = true

@minValue(1)
@maxValue(40)
param eventHubMaximumThroughputUnits int = 4

@description('Partitions of the diagnostics hub (1-32; fixed after creation on Standard).')
@minValue(1)
@maxValue(32)
param eventHubPartitionCount int = 4

@description('Days events stay in the hub (1-7): how long phiwatch can be down without losing logs.')
@minValue(1)
@maxValue(7)
param eventHubMessageRetentionInDays int = 7

@description('Partitions of the phi-events hub (1-32): the parallelism of the detect function (at most one instance per partition). Fixed after creation on Standard and can never be lowered; default: the same as the diagnostics hub. See infra/README.md, "Two stages and scaling".')
@minValue(1)
@maxValue(32)
param phiEventsPartitionCount int = 4

@description('Days normalised events stay in the phi-events hub (1-7): how long detect can be stopped or stalled without missing events.')
@minValue(1)
@maxValue(7)
param phiEventsMessageRetentionInDays int = 7

@description('Throughput units of the phi-events namespace (Standard, 1-40): one event in and one out per normalised event.')
@minValue(1)
@maxValue(40)
param phiEventsThroughputUnits int = 1

@description('Refuse SAS on the diagnostics namespace (the phi-events namespace always refuses it). Azure Monitor diagnostic settings can only deliver with SAS: true stops diagnostics.bicep\'s settings from delivering. See infra/README.md, "Event Hubs local authentication".')
param eventHubDisableLocalAuth bool = false

// --- Archive ----------------------------------------------------------------------------------

@description('Days each archived blob version is protected from overwrite and delete (default 2190 = 6 years).')
@minValue(1)
@maxValue(146000)
param archiveImmutabilityDays int = 2190

@description('Whether the archive retention policy has been LOCKED (infra/README.md, "Immutability: unlocked or locked"). false = trial: this deployment creates/updates the policy Unlocked. true = production, after running the lock command once: deployments leave the locked policy alone. Locking cannot be undone.')
param archiveImmutabilityLocked bool = false

@description('Redundancy of the archive storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param archiveStorageSku string = 'Standard_GRS'

@description('Send read/write/delete logs of the archive container, and the vault AuditEvent log, to the operations workspace.')
param auditPhiwatchResources bool = true

// --- Privacy inputs (docs/privacy.md) -----------------------------------------------------------

@description('Blob name of the workforce roster CSV in the phiwatch-privacy container (PHIWATCH_ROSTER_URL); empty: no roster, and the rules that need one stay off. Upload it with your own identity (Storage Blob Data Contributor on the container); the app only reads it.')
param rosterBlobName string = ''

@description('Blob name of the patient index CSV in the phiwatch-privacy container (PHIWATCH_PATIENTS_URL); empty: no index.')
param patientsBlobName string = ''

// --- Key Vault --------------------------------------------------------------------------------

@description('Version of the pseudonymisation secret the app uses (32 hex characters, from `az keyvault secret set`; infra/README.md, "Keys"). The Key Vault reference is pinned to it, so a new secret version changes nothing until this is changed: rotation is this explicit step. Empty (first deployment): the app has no key and processes nothing until it is set. The template never writes the secret.')
@maxLength(32)
param pseudonymKeyVersion string = ''

// --- Alerts -------------------------------------------------------------------------------------

@description('Resource id of an existing Azure Monitor action group that the phiwatch alerts notify (function failures, consumer lag, outbox backlog, stalled hub). Empty: the alerts fire in Azure Monitor but notify nobody.')
param alertActionGroupId string = ''

@description('Consumer lag (seconds between a batch\'s newest enqueued time and its processing) above which the lag alert fires.')
@minValue(60)
param alertLagSeconds int = 900

@description('Outbox entries waiting for Sentinel above which the outbox alert fires.')
@minValue(1)
param alertOutboxEntries int = 50

// --- Function App -----------------------------------------------------------------------------

@description('Flex Consumption: upper bound of the app\'s instances (40-1000). normalize and detect scale separately (one instance per partition at most each): keep it at least eventHubPartitionCount + phiEventsPartitionCount plus a few for HTTP and the timer.')
@minValue(40)
@maxValue(1000)
param functionMaximumInstanceCount int = 40

@description('Flex Consumption: memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

@description('Part of every archive batch name: bump (1, 2, ...) when the diagnostics hub is re-created or a Geo-DR failover makes the secondary primary (sequence numbers start again)')
param eventHubGeneration string = ''

// --- Names --------------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id)
var base = toLower(baseName)
var names = {
  eventHubNamespace: 'evhns-${base}-${suffix}'
  phiEventsNamespace: 'evhns-${base}-ev-${suffix}'
  functionApp: 'func-${base}-${suffix}'
  plan: 'plan-${base}-${suffix}'
  appInsights: 'appi-${base}-${suffix}'
  keyVault: take('kv${base}${suffix}', 24)
  archiveStorage: take('st${base}arc${suffix}', 24)
  hostStorage: take('st${base}fn${suffix}', 24)
}
var eventHubName = 'diagnostics'
var consumerGroupName = 'phiwatch'
var phiEventsHubName = 'phi-events'
var phiEventsConsumerGroupName = 'phiwatch'
var archiveContainerName = 'phiwatch-archive'
var outboxContainerName = 'phiwatch-outbox'
var stateContainerName = 'phiwatch-state'
var privacyContainerName = 'phiwatch-privacy'

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
  scope: resourceGroup(workspaceResourceGroup)
}

var operationsWorkspaceId = empty(operationsWorkspaceResourceId) ? workspace.id : operationsWorkspaceResourceId

// The tables, the DCR (and DCE), the analytic rule and the workbook. The DCR role for the
// Function App is assigned in roles.bicep (the app's identity does not exist before the app,
// and the app's settings need the DCR's outputs), so no principal id is passed here.
module sentinel 'sentinel/main.bicep' = {
  name: 'phiwatch-sentinel'
  params: {
    workspaceName: workspaceName
    workspaceResourceGroup: workspaceResourceGroup
    functionAppPrincipalId: ''
    dcrName: dcrName
    useDce: useDce
    retentionInDays: retentionInDays
    totalRetentionInDays: totalRetentionInDays
    deployRule: deployRule
    onboardSentinel: onboardSentinel
    deployWorkbook: deployWorkbook
  }
}

module eventHubs 'modules/eventhubs.bicep' = {
  name: 'phiwatch-eventhubs'
  params: {
    name: names.eventHubNamespace
    location: location
    tags: tags
    throughputUnits: eventHubThroughputUnits
    autoInflate: eventHubAutoInflate
    maximumThroughputUnits: eventHubMaximumThroughputUnits
    partitionCount: eventHubPartitionCount
    messageRetentionInDays: eventHubMessageRetentionInDays
    disableLocalAuth: eventHubDisableLocalAuth
    eventHubName: eventHubName
    consumerGroupName: consumerGroupName
    phiEventsHubName: phiEventsHubName
    phiEventsPartitionCount: phiEventsPartitionCount
    phiEventsMessageRetentionInDays: phiEventsMessageRetentionInDays
    phiEventsConsumerGroupName: phiEventsConsumerGroupName
    phiEventsNamespaceName: names.phiEventsNamespace
    phiEventsThroughputUnits: phiEventsThroughputUnits
  }
}

module archive 'modules/storage-archive.bicep' = {
  name: 'phiwatch-archive'
  params: {
    name: names.archiveStorage
    location: location
    tags: tags
    archiveSkuName: archiveStorageSku
    archiveContainerName: archiveContainerName
    outboxContainerName: outboxContainerName
    stateContainerName: stateContainerName
    privacyContainerName: privacyContainerName
    immutabilityPeriodInDays: archiveImmutabilityDays
    immutabilityPolicyLocked: archiveImmutabilityLocked
    workspaceResourceId: auditPhiwatchResources ? operationsWorkspaceId : ''
  }
}

module hostStorage 'modules/storage-host.bicep' = {
  name: 'phiwatch-host-storage'
  params: {
    name: names.hostStorage
    location: location
    tags: tags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'phiwatch-keyvault'
  params: {
    name: names.keyVault
    location: location
    tags: tags
    pseudonymKeyVersion: pseudonymKeyVersion
    workspaceResourceId: auditPhiwatchResources ? operationsWorkspaceId : ''
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'phiwatch-functionapp'
  params: {
    name: names.functionApp
    planName: names.plan
    appInsightsName: names.appInsights
    location: location
    tags: tags
    workspaceResourceId: operationsWorkspaceId
    hostStorageAccountName: hostStorage.outputs.accountName
    deploymentContainerUrl: hostStorage.outputs.deploymentContainerUrl
    eventHubFullyQualifiedNamespace: eventHubs.outputs.fullyQualifiedNamespace
    eventHubName: eventHubs.outputs.eventHubName
    consumerGroupName: eventHubs.outputs.consumerGroupName
    phiEventsFullyQualifiedNamespace: eventHubs.outputs.phiEventsFullyQualifiedNamespace
    phiEventsHubName: eventHubs.outputs.phiEventsHubName
    phiEventsConsumerGroupName: eventHubs.outputs.phiEventsConsumerGroupName
    archiveUrl: archive.outputs.archiveUrl
    outboxUrl: archive.outputs.outboxUrl
    stateUrl: archive.outputs.stateUrl
    rosterUrl: empty(rosterBlobName) ? '' : '${archive.outputs.privacyContainerUrl}/${rosterBlobName}'
    patientsUrl: empty(patientsBlobName) ? '' : '${archive.outputs.privacyContainerUrl}/${patientsBlobName}'
    pseudonymKeyReference: keyVault.outputs.pseudonymKeyReference
    archiveImmutabilityLocked: archiveImmutabilityLocked
    signingKeyUrl: keyVault.outputs.signingKeyUrl
    dcrEndpoint: sentinel.outputs.logsIngestionEndpoint
    dcrImmutableId: sentinel.outputs.dcrImmutableId
    logLevel: logLevel
    eventHubGeneration: eventHubGeneration
    maximumInstanceCount: functionMaximumInstanceCount
    instanceMemoryMB: functionInstanceMemoryMB
  }
}

module roles 'modules/roles.bicep' = {
  name: 'phiwatch-roles'
  params: {
    principalId: functionApp.outputs.principalId
    eventHubNamespaceName: eventHubs.outputs.namespaceName
    eventHubName: eventHubs.outputs.eventHubName
    phiEventsNamespaceName: eventHubs.outputs.phiEventsNamespaceName
    phiEventsHubName: eventHubs.outputs.phiEventsHubName
    archiveStorageAccountName: archive.outputs.accountName
    archiveContainerName: archive.outputs.archiveContainerName
    outboxContainerName: archive.outputs.outboxContainerName
    stateContainerName: archive.outputs.stateContainerName
    privacyContainerName: archive.outputs.privacyContainerName
    hostStorageAccountName: hostStorage.outputs.accountName
    keyVaultName: keyVault.outputs.name
    pseudonymSecretName: keyVault.outputs.pseudonymSecretName
    pseudonymSecretPinned: !empty(pseudonymKeyVersion)
    signingKeyName: keyVault.outputs.signingKeyName
    dcrName: dcrName
    appInsightsName: functionApp.outputs.appInsightsName
  }
  dependsOn: [
    sentinel
  ]
}

module alerts 'modules/alerts.bicep' = {
  name: 'phiwatch-alerts'
  params: {
    baseName: base
    location: location
    tags: tags
    actionGroupId: alertActionGroupId
    appInsightsName: functionApp.outputs.appInsightsName
    eventHubNamespaceName: eventHubs.outputs.namespaceName
    phiEventsNamespaceName: eventHubs.outputs.phiEventsNamespaceName
    lagSeconds: alertLagSeconds
    outboxEntries: alertOutboxEntries
  }
}

output functionAppName string = functionApp.outputs.name
output functionAppPrincipalId string = functionApp.outputs.principalId
@description('/api/health needs a function key (`?code=` or x-functions-key; infra/README.md, "Health").')
output functionAppHealthUrl string = 'https://${functionApp.outputs.defaultHostName}/api/health'
output eventHubNamespaceName string = eventHubs.outputs.namespaceName
output eventHubName string = eventHubs.outputs.eventHubName
output phiEventsHubName string = eventHubs.outputs.phiEventsHubName
output phiEventsNamespaceName string = eventHubs.outputs.phiEventsNamespaceName
@description('eventHubAuthorizationRuleId parameter of infra/diagnostics.bicep.')
output diagnosticsEventHubAuthorizationRuleId string = eventHubs.outputs.diagnosticsAuthorizationRuleId
output keyVaultName string = keyVault.outputs.name
output archiveStorageAccountName string = archive.outputs.accountName
output archiveUrl string = archive.outputs.archiveUrl
output outboxUrl string = archive.outputs.outboxUrl
output stateUrl string = archive.outputs.stateUrl
@description('Upload the roster and patient index here (the raw files; they never go to Sentinel).')
output privacyContainerUrl string = archive.outputs.privacyContainerUrl
output signingKeyUrl string = keyVault.outputs.signingKeyUrl
@description('PHIWATCH_PSEUDONYM_KEY: the Key Vault reference pinned to pseudonymKeyVersion (empty until it is set).')
output pseudonymKeyReference string = keyVault.outputs.pseudonymKeyReference
output dcrImmutableId string = sentinel.outputs.dcrImmutableId
output logsIngestionEndpoint string = sentinel.outputs.logsIngestionEndpoint
