// Blob service logs (StorageRead, StorageWrite, StorageDelete) of one storage account -> the
// phiwatch hub. Never point this at phiwatch's own archive or host storage accounts: every
// blob phiwatch writes would come back through the hub as a new event to archive.

@description('Name of the existing storage account.')
param name string

param eventHubAuthorizationRuleId string
param eventHubName string = 'diagnostics'
param settingName string = 'phiwatch'

@description('Blob log categories to stream.')
param categories array = [
  'StorageRead'
  'StorageWrite'
  'StorageDelete'
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: name
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource setting 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: blobService
  properties: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    logs: [
      for category in categories: {
        category: category
        enabled: true
      }
    ]
  }
}
