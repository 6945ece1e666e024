// Optional Data Collection Endpoint for the phiwatch DCR (main.bicep: useDce = true).
//
// Not needed by default: the DCR is `kind: 'Direct'` and has its own logsIngestion endpoint.
// A DCE is required when ingestion must go through Azure Monitor Private Link: add this DCE
// to your Azure Monitor Private Link Scope (AMPLS) and set publicNetworkAccess to 'Disabled'.
// The DCE must be in the same region as the DCR.

@description('Name of the data collection endpoint.')
param name string

@description('Region; must match the DCR (and the workspace).')
param location string

@description('Public ingestion through this endpoint. Disabled = only through Private Link (AMPLS).')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Enabled'

resource dce 'Microsoft.Insights/dataCollectionEndpoints@2023-03-11' = {
  name: name
  location: location
  properties: {
    description: 'phiwatch: Logs Ingestion API endpoint (Private Link capable)'
    networkAcls: {
      publicNetworkAccess: publicNetworkAccess
    }
  }
}

output id string = dce.id
output logsIngestionEndpoint string = dce.properties.logsIngestion.endpoint
