// Storage for the Functions host itself (AzureWebJobsStorage) and the Flex Consumption
// deployment package. Separate from the archive account so that the host's broad role
// (Storage Blob Data Owner on this account, roles.bicep) grants nothing on the archive.
//
// The host keeps Event Hubs checkpoints, timer schedule state and its own keys here; it
// creates its containers (azure-webjobs-*) itself. `deploymentContainerName` holds the
// package that `func azure functionapp publish` / zip deploy uploads. Everything is reached
// with the app's managed identity: shared key access is disabled.

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

param location string

@description('Redundancy. The host state (checkpoints, timer state) is rebuilt or replayed if lost, so LRS is the default.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param hostSkuName string = 'Standard_LRS'

@description('Blob container for the Flex Consumption deployment package.')
param deploymentContainerName string = 'app-package'

param tags object = {}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: hostSkuName
  }
  properties: {
    // checkov:skip=CKV_AZURE_35: No VNet in this deployment: the Flex Consumption host reaches its storage over the public endpoint (Entra ID only, shared key disabled); see infra/README.md, Network exposure.
    // checkov:skip=CKV_AZURE_59: Same decision as CKV_AZURE_35; every request needs an Entra ID token and RBAC.
    // checkov:skip=CKV_AZURE_206: Host state only (checkpoints, timer state, deployment package): it is replayed or re-published if lost, so geo-replication is not worth its cost; hostSkuName can raise it.
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource hostBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostAccount
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output accountName string = hostAccount.name
output accountId string = hostAccount.id
output blobEndpoint string = hostAccount.properties.primaryEndpoints.blob
output deploymentContainerUrl string = '${hostAccount.properties.primaryEndpoints.blob}${deploymentContainer.name}'
