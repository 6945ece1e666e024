// Data collection rule for the phiwatch Logs Ingestion API uploads.
//
// Endpoint choice: by default the DCR is `kind: 'Direct'`, which gives it its own
// logsIngestion endpoint (properties.endpoints.logsIngestion), so no DCE resource is needed.
// Azure Monitor Private Link cannot use that endpoint: it needs a Data Collection Endpoint in
// an AMPLS. main.bicep therefore offers `useDce`; with it, dce.bicep creates the DCE, its id is
// passed in here, the DCR is a plain (non-Direct) DCR associated with it, and the DCE's
// endpoint is the one to upload to.
//
// Streams, their columns and the transforms come from ../generated/log-analytics-schema.json
// (generated from the pydantic models by `phiwatch schema --format bicep-json`): one input
// stream `Custom-<Name>` per table, one data flow each into `Custom-<Table>_CL`. The tables
// must exist before this DCR is deployed (main.bicep orders it after tables.bicep).
//
// The Function App's managed identity gets Monitoring Metrics Publisher on this DCR only (the
// role the Logs Ingestion API checks); role assignments can take up to 30 minutes to apply.

@description('Name of the data collection rule.')
param name string

@description('Region of the DCR; use the workspace region.')
param location string

@description('Resource id of the Log Analytics workspace that holds the phiwatch tables.')
param workspaceResourceId string

@description('Resource id of a Data Collection Endpoint (dce.bicep), or empty for a Direct DCR with its own endpoint.')
param dataCollectionEndpointId string = ''

@description('The DCE logs ingestion endpoint when dataCollectionEndpointId is set.')
param dataCollectionEndpointLogsIngestion string = ''

@description('Object (principal) id of the identity that uploads (the Function App managed identity); empty skips the role assignment.')
param publisherPrincipalId string = ''

@description('Principal type of publisherPrincipalId.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param publisherPrincipalType string = 'ServicePrincipal'

var schema = loadJsonContent('../generated/log-analytics-schema.json')
// Must equal phiwatch.schema.export.DCR_DESTINATION.
var destinationName = 'phiwatchWorkspace'
// Built-in role "Monitoring Metrics Publisher".
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'
var useDce = !empty(dataCollectionEndpointId)
// streamDeclarations is an object keyed by stream name: { '<stream>': { columns: [...] } }.
// Built as JSON text from a `for` loop rather than with toObject() and a lambda, because
// checkov's Bicep parser (pycep) cannot parse lambdas; the deployed object is the same. The
// stream names are `Custom-<Name>` (no characters that need JSON escaping).
var streamDeclarationEntries = [
  for t in schema.tables: '"${t.stream}":${string({ columns: t.streamColumns })}'
]
var streamDeclarations = json('{${join(streamDeclarationEntries, ',')}}')

resource dcr 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: name
  location: location
  kind: useDce ? null : 'Direct'
  properties: {
    description: 'phiwatch: normalised PHI-access events, alerts and pipeline health via the Logs Ingestion API'
    dataCollectionEndpointId: useDce ? dataCollectionEndpointId : null
    streamDeclarations: streamDeclarations
    destinations: {
      logAnalytics: [
        {
          name: destinationName
          workspaceResourceId: workspaceResourceId
        }
      ]
    }
    dataFlows: [
      for t in schema.tables: {
        streams: [
          t.stream
        ]
        destinations: [
          destinationName
        ]
        transformKql: t.transformKql
        outputStream: t.outputStream
      }
    ]
  }
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(publisherPrincipalId)) {
  name: guid(dcr.id, publisherPrincipalId, monitoringMetricsPublisherRoleId)
  scope: dcr
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: publisherPrincipalId
    principalType: publisherPrincipalType
    description: 'phiwatch: upload to this DCR through the Logs Ingestion API'
  }
}

output id string = dcr.id
output immutableId string = dcr.properties.immutableId
output logsIngestionEndpoint string = useDce ? dataCollectionEndpointLogsIngestion : (dcr.properties.?endpoints.?logsIngestion ?? '')
output streams array = [for t in schema.tables: t.stream]
