// The phiwatch audit archive, the Sentinel outbox and the detection state, in one storage
// account that holds nothing else.
//
// - `phiwatch-archive` (PHIWATCH_ARCHIVE_URL): raw diagnostic records and signed manifests,
//   written create-only by the Function App. The container has version-level immutability
//   (WORM) with a default time-based retention policy: every blob version is protected from
//   overwrite and delete for `immutabilityPeriodInDays` after it is written. That policy, not
//   RBAC, is what stops overwrite and delete: the app's role (Storage Blob Data Contributor
//   on this container, roles.bicep) is the narrowest built-in role that can create blobs,
//   and it could otherwise also overwrite and delete them.
// - `phiwatch-outbox` (PHIWATCH_OUTBOX_URL): rows Sentinel has not accepted yet. The app
//   rewrites and deletes them, so this container must NOT be immutable.
// - `phiwatch-state` (PHIWATCH_STATE_URL): the `detect` function's snapshot of its detection
//   state, one blob per consumer group and phi-events partition, replaced with etag
//   conditions (If-Match / If-None-Match) after every batch. phiwatch never creates this
//   container. It must NOT be immutable either: WORM would refuse every replacement and stall
//   detection.
// - `phiwatch-privacy` (PHIWATCH_ROSTER_URL, PHIWATCH_PATIENTS_URL): the workforce roster and
//   the patient index as uploaded (docs/privacy.md). The app only reads them (Storage Blob
//   Data Reader on this container alone, roles.bicep): it checks each blob's version id and
//   ETag and downloads a new version, so versioning (on for the account) is what makes an
//   upload a reload. Mutable: an upload is a new version. These are the raw files, names and
//   addresses included, so previous versions expire after `privacyVersionRetentionDays`; the
//   pipeline holds only keyed tags of them, and Sentinel only the pseudonymised watchlists.
//
// Account: no anonymous access, no shared key (Entra ID only), TLS 1.2, HTTPS only, blob
// versioning (required by version-level immutability), soft delete for blobs and
// containers. Versioning applies to the outbox and the state too, so lifecycle rules remove
// their previous versions after `outboxVersionRetentionDays` and `stateVersionRetentionDays`
// (every state snapshot replacement makes a version).
//
// Locking (immutabilityPolicyLocked): Azure Resource Manager creates the container policy
// Unlocked and cannot lock it (locking is a separate action, and a locked policy can no
// longer be written by a deployment). Lock it once with the commands in infra/README.md
// ("Immutability: unlocked or locked"), then set immutabilityPolicyLocked=true so that later
// deployments leave the locked policy alone. A locked policy cannot be unlocked, shortened or
// deleted, and the account cannot be deleted while it holds protected versions.

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

param location string

@description('Redundancy of the archive. Geo-redundant by default: the archive is the evidence of record.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param archiveSkuName string = 'Standard_GRS'

@description('Archive container (PHIWATCH_ARCHIVE_URL).')
param archiveContainerName string = 'phiwatch-archive'

@description('Outbox container (PHIWATCH_OUTBOX_URL); mutable.')
param outboxContainerName string = 'phiwatch-outbox'

@description('State container (PHIWATCH_STATE_URL); mutable, replaced with etag conditions by the detect function.')
param stateContainerName string = 'phiwatch-state'

@description('Container of the privacy inputs (PHIWATCH_ROSTER_URL, PHIWATCH_PATIENTS_URL); read-only for the app.')
param privacyContainerName string = 'phiwatch-privacy'

@description('Days each archived blob version is protected from overwrite and delete (default 2190 = 6 years).')
@minValue(1)
@maxValue(146000)
param immutabilityPeriodInDays int = 2190

@description('false: this deployment creates or updates the (Unlocked) retention policy. true: the policy has been locked with the README commands and deployments must not touch it.')
param immutabilityPolicyLocked bool = false

@description('Soft-delete retention for blobs and containers, in days.')
@minValue(1)
@maxValue(365)
param deleteRetentionDays int = 14

@description('Days before previous versions of outbox blobs are deleted (versioning is on for the whole account).')
@minValue(1)
param outboxVersionRetentionDays int = 7

@description('Days before previous versions of state snapshots are deleted. Each batch replaces a partition\'s snapshot (a new version), and only the current one is ever read, so keep this short.')
@minValue(1)
param stateVersionRetentionDays int = 1

@description('Days before previous versions of the privacy inputs are deleted: each upload of the roster or index makes a version, and the old ones still hold raw names and addresses.')
@minValue(1)
param privacyVersionRetentionDays int = 30

@description('Resource id of the Log Analytics workspace that receives the archive access logs; empty = none.')
param workspaceResourceId string = ''

param tags object = {}

resource archiveAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: archiveSkuName
  }
  properties: {
    // checkov:skip=CKV_AZURE_35: No VNet in this deployment: the Flex Consumption app reaches the archive over the public endpoint (Entra ID only, shared key disabled). Private endpoint + VNet integration is the documented hardening (infra/README.md, Network exposure).
    // checkov:skip=CKV_AZURE_59: Same decision as CKV_AZURE_35: public network access stays enabled until the app is VNet-integrated; every request still needs an Entra ID token and RBAC.
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
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource archiveBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: archiveAccount
  name: 'default'
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: archiveBlobService
  name: archiveContainerName
  properties: {
    publicAccess: 'None'
    // Version-level immutability (WORM); cannot be turned off once enabled.
    immutableStorageWithVersioning: {
      enabled: true
    }
  }
}

// The container's default time-based retention policy: every new blob version is protected
// for immutabilityPeriodInDays. Created Unlocked (ARM cannot lock); see the header.
resource archiveRetention 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (!immutabilityPolicyLocked) {
  parent: archiveContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: immutabilityPeriodInDays
    allowProtectedAppendWrites: false
    allowProtectedAppendWritesAll: false
  }
}

// Mutable on purpose: the outbox rewrites and deletes its entries. No immutability here.
resource outboxContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: archiveBlobService
  name: outboxContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Mutable on purpose: detect replaces each partition's snapshot with etag conditions. No
// immutability here.
resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: archiveBlobService
  name: stateContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Mutable on purpose: a new roster or index is uploaded as a new version of the same blob,
// which is how the app sees that it changed. Private: no anonymous access, like the account.
resource privacyContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: archiveBlobService
  name: privacyContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: archiveAccount
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'outbox-delete-previous-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${outboxContainerName}/'
              ]
            }
            actions: {
              version: {
                delete: {
                  daysAfterCreationGreaterThan: outboxVersionRetentionDays
                }
              }
            }
          }
        }
        {
          name: 'state-delete-previous-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${stateContainerName}/'
              ]
            }
            actions: {
              version: {
                delete: {
                  daysAfterCreationGreaterThan: stateVersionRetentionDays
                }
              }
            }
          }
        }
        {
          name: 'privacy-delete-previous-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${privacyContainerName}/'
              ]
            }
            actions: {
              version: {
                delete: {
                  daysAfterCreationGreaterThan: privacyVersionRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

// Who read, wrote or tried to delete archive blobs, in Log Analytics. Never route these logs
// to the phiwatch hub: every archive write would produce a log that phiwatch archives again.
// The setting covers the whole blob service, so outbox and state traffic is logged too (a
// write per detect batch and partition; infra/README.md, Cost drivers).
resource archiveAccessLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(workspaceResourceId)) {
  name: 'phiwatch-archive-access'
  scope: archiveBlobService
  properties: {
    workspaceId: workspaceResourceId
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

output accountName string = archiveAccount.name
output accountId string = archiveAccount.id
output archiveContainerName string = archiveContainer.name
output outboxContainerName string = outboxContainer.name
output stateContainerName string = stateContainer.name
@description('PHIWATCH_ARCHIVE_URL')
output archiveUrl string = '${archiveAccount.properties.primaryEndpoints.blob}${archiveContainer.name}'
@description('PHIWATCH_OUTBOX_URL')
output outboxUrl string = '${archiveAccount.properties.primaryEndpoints.blob}${outboxContainer.name}'
@description('PHIWATCH_STATE_URL')
output stateUrl string = '${archiveAccount.properties.primaryEndpoints.blob}${stateContainer.name}'
output privacyContainerName string = privacyContainer.name
@description('The privacy inputs\' container; PHIWATCH_ROSTER_URL and PHIWATCH_PATIENTS_URL are blobs in it.')
output privacyContainerUrl string = '${archiveAccount.properties.primaryEndpoints.blob}${privacyContainer.name}'
