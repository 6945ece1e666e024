// Every role the phiwatch Function App's managed identity holds, each on the narrowest
// scope Azure RBAC allows for what the app does. tests/test_infra_properties.py checks each
// (role, scope) pair.
//
// | Role (built-in id)                                           | Scope                     | Why |
// |--------------------------------------------------------------|---------------------------|-----|
// | Azure Event Hubs Data Receiver (a638d3c7-...-5f17a39d4fde)   | hub `diagnostics`         | the `normalize` trigger reads the hub; consumer groups cannot be an RBAC scope, the hub is the narrowest |
// | Azure Event Hubs Data Sender (2b629674-...-ef4638d8f975)     | hub `phi-events`          | `normalize` publishes normalised events (azure-eventhub producer, DefaultAzureCredential); the hub, in its own namespace that refuses SAS, so only this identity can write detection's input |
// | Azure Event Hubs Data Receiver (a638d3c7-...-5f17a39d4fde)   | hub `phi-events`          | the `detect` trigger reads the hub |
// | Storage Blob Data Contributor (ba92f5b4-...-e96b0029c9fe)    | container phiwatch-archive | create archive blobs; the narrowest built-in role that can create blobs. It could also overwrite and delete: the container's immutability policy, not RBAC, prevents that |
// | Storage Blob Data Contributor (ba92f5b4-...-e96b0029c9fe)    | container phiwatch-outbox | write, read and delete outbox entries |
// | Storage Blob Data Contributor (ba92f5b4-...-e96b0029c9fe)    | container phiwatch-state  | read and replace (etag-conditional) detect's per-partition state snapshots |
// | Storage Blob Data Reader (2a2b9908-...-a410df84e7d1)         | container phiwatch-privacy | read the workforce roster and patient index blobs (PHIWATCH_ROSTER_URL, PHIWATCH_PATIENTS_URL): their properties (version id, ETag) and content; never write them |
// | Storage Blob Data Owner (b7e6dc6d-...-0f276bb0955b)          | host storage account      | AzureWebJobsStorage and the Flex deployment package: the host creates its own containers (azure-webjobs-*), so it needs the account; this account holds nothing else |
// | Monitoring Metrics Publisher (3913510d-...-420c390055eb)     | the DCR                   | upload to Sentinel through the Logs Ingestion API |
// | Monitoring Metrics Publisher (3913510d-...-420c390055eb)     | Application Insights      | Entra ID-authenticated telemetry (local auth is disabled on the component) |
// | Key Vault Crypto User (12338af0-...-57ae8d297424)            | the signing key           | read the archive signing key's public part and sign with it; that key only, not the vault |
// | Key Vault Secrets User (4633458b-...-0445c86b69e6)           | the pseudonym secret      | resolve the PHIWATCH_PSEUDONYM_KEY Key Vault reference; that secret only. Assigned once the secret exists (pseudonymKeyVersion set: the secret is written by hand before that) |
//
// Both functions run under this one identity. `detect` archives its alerts in phiwatch-archive
// and sends them to Sentinel through the same DCR and outbox as `normalize`: no further role.
//
// New role assignments take effect within minutes, up to 30 minutes for the DCR; until then
// the app's calls fail with 403 and are retried.

@description('Object (principal) id of the Function App system-assigned managed identity.')
param principalId string

param eventHubNamespaceName string
param eventHubName string
@description('The phi-events namespace (local auth disabled): only identities with a role here can send.')
param phiEventsNamespaceName string
param phiEventsHubName string
param archiveStorageAccountName string
param archiveContainerName string
param outboxContainerName string
param stateContainerName string
@description('The privacy inputs\' container (Storage Blob Data Reader is scoped to it).')
param privacyContainerName string
param hostStorageAccountName string
param keyVaultName string
@description('The archive signing key (Key Vault Crypto User is scoped to it).')
param signingKeyName string
@description('The pseudonymisation secret (Key Vault Secrets User is scoped to it).')
param pseudonymSecretName string
@description('Whether the pseudonymisation secret exists (main.bicep: pseudonymKeyVersion set). A role scope must exist, and the secret is written by hand after the first deployment.')
param pseudonymSecretPinned bool
param dcrName string
param appInsightsName string

var roles = {
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  keyVaultCryptoUser: '12338af0-0e69-4776-bea7-57ae8d297424'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: namespace
  name: eventHubName
}

resource phiEventsNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: phiEventsNamespaceName
}

resource phiEventsHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: phiEventsNamespace
  name: phiEventsHubName
}

resource archiveAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: archiveStorageAccountName
}

resource archiveBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: archiveAccount
  name: 'default'
}

resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: archiveBlobService
  name: archiveContainerName
}

resource outboxContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: archiveBlobService
  name: outboxContainerName
}

resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: archiveBlobService
  name: stateContainerName
}

resource privacyContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: archiveBlobService
  name: privacyContainerName
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource signingKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' existing = {
  parent: vault
  name: signingKeyName
}

resource pseudonymSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: pseudonymSecretName
}

resource dcr 'Microsoft.Insights/dataCollectionRules@2023-03-11' existing = {
  name: dcrName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource hubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, principalId, roles.eventHubsDataReceiver)
  scope: hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: read the diagnostics hub (Event Hubs trigger)'
  }
}

resource phiEventsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(phiEventsHub.id, principalId, roles.eventHubsDataSender)
  scope: phiEventsHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: normalize publishes normalised events to the phi-events hub'
  }
}

resource phiEventsReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(phiEventsHub.id, principalId, roles.eventHubsDataReceiver)
  scope: phiEventsHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: read the phi-events hub (detect, Event Hubs trigger)'
  }
}

resource archiveWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(archiveContainer.id, principalId, roles.storageBlobDataContributor)
  scope: archiveContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: create archive blobs (overwrite and delete are stopped by the immutability policy)'
  }
}

resource outboxWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(outboxContainer.id, principalId, roles.storageBlobDataContributor)
  scope: outboxContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: keep undelivered Sentinel rows in the outbox'
  }
}

resource stateWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(stateContainer.id, principalId, roles.storageBlobDataContributor)
  scope: stateContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: keep detect state snapshots per phi-events partition'
  }
}

resource privacyReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(privacyContainer.id, principalId, roles.storageBlobDataReader)
  scope: privacyContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: read the workforce roster and patient index (read only)'
  }
}

resource hostStorageOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostAccount.id, principalId, roles.storageBlobDataOwner)
  scope: hostAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: Functions host storage (AzureWebJobsStorage) and deployment package'
  }
}

resource dcrPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dcr.id, principalId, roles.monitoringMetricsPublisher)
  scope: dcr
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: upload to this DCR through the Logs Ingestion API'
  }
}

resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: Entra ID-authenticated Application Insights telemetry'
  }
}

resource signer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(signingKey.id, principalId, roles.keyVaultCryptoUser)
  scope: signingKey
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultCryptoUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: sign archive manifests with the Key Vault key (ES256)'
  }
}

resource secretReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (pseudonymSecretPinned) {
  name: guid(pseudonymSecret.id, principalId, roles.keyVaultSecretsUser)
  scope: pseudonymSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'phiwatch: resolve the PHIWATCH_PSEUDONYM_KEY Key Vault reference'
  }
}
