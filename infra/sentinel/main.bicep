// phiwatch -> Microsoft Sentinel: custom tables, the Logs Ingestion DCR (with the Function
// App's upload permission), the incident rule, the workbook and, optionally, the
// pseudonymised roster and patient index as watchlists (watchlists.bicep).
//
//   phiwatch schema --format bicep-json --out infra/generated/log-analytics-schema.json --check
//   az deployment group create --resource-group <rg for the DCR> \
//     --template-file infra/sentinel/main.bicep \
//     --parameters @infra/sentinel/main.parameters.json
//
// The DCR (and the optional DCE) go into the deployment's resource group; the tables, the rule
// and the workbook go into the workspace's resource group (workspaceResourceGroup), which may
// be a different one. See infra/sentinel/README.md.

targetScope = 'resourceGroup'

@description('Name of the existing Log Analytics workspace that Microsoft Sentinel uses.')
param workspaceName string

@description('Resource group of the workspace (default: the deployment resource group).')
param workspaceResourceGroup string = resourceGroup().name

@description('Region of the DCR, DCE and workbook; empty = the workspace region (recommended).')
param location string = ''

@description('Object (principal) id of the Function App system-assigned managed identity. It gets Monitoring Metrics Publisher on the DCR. Empty skips the role assignment.')
param functionAppPrincipalId string

@description('Name of the data collection rule.')
param dcrName string = 'dcr-phiwatch'

@description('Create a Data Collection Endpoint and ingest through it (needed for Azure Monitor Private Link). false = Direct DCR with its own endpoint.')
param useDce bool = false

@description('Name of the data collection endpoint (useDce only).')
param dceName string = 'dce-phiwatch'

@description('Public network access of the DCE (useDce only). Disabled = Private Link only.')
@allowed([
  'Enabled'
  'Disabled'
])
param dcePublicNetworkAccess string = 'Enabled'

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

@description('Create the analytic rule enabled.')
param ruleEnabled bool = true

@description('Onboard Microsoft Sentinel on the workspace (skip when already enabled).')
param onboardSentinel bool = false

@description('Deploy the phiwatch workbook.')
param deployWorkbook bool = true

@description('Deploy the phiwatch-workforce and phiwatch-patients watchlists (watchlists.bicep) from the two content parameters.')
param deployWatchlists bool = false

@description('phiwatch-workforce.csv as `phiwatch roster watchlists` writes it (never the raw roster). Empty: that watchlist is left out.')
@secure()
param workforceWatchlistContent string = ''

@description('phiwatch-patients.csv as `phiwatch roster watchlists` writes it (never the raw index). Empty: that watchlist is left out.')
@secure()
param patientsWatchlistContent string = ''

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
  scope: resourceGroup(workspaceResourceGroup)
}

var regionOf = empty(location) ? workspace.location : location

module tables 'tables.bicep' = {
  name: 'phiwatch-tables'
  scope: resourceGroup(workspaceResourceGroup)
  params: {
    workspaceName: workspaceName
    retentionInDays: retentionInDays
    totalRetentionInDays: totalRetentionInDays
  }
}

module dce 'dce.bicep' = if (useDce) {
  name: 'phiwatch-dce'
  params: {
    name: dceName
    location: regionOf
    publicNetworkAccess: dcePublicNetworkAccess
  }
}

module dcr 'dcr.bicep' = {
  name: 'phiwatch-dcr'
  params: {
    name: dcrName
    location: regionOf
    workspaceResourceId: workspace.id
    dataCollectionEndpointId: useDce ? dce.outputs.id : ''
    dataCollectionEndpointLogsIngestion: useDce ? dce.outputs.logsIngestionEndpoint : ''
    publisherPrincipalId: functionAppPrincipalId
  }
  dependsOn: [
    tables
  ]
}

module rule 'rule.bicep' = if (deployRule) {
  name: 'phiwatch-rule'
  scope: resourceGroup(workspaceResourceGroup)
  params: {
    workspaceName: workspaceName
    enabled: ruleEnabled
    onboardSentinel: onboardSentinel
  }
  dependsOn: [
    tables
  ]
}

module workbook 'workbook.bicep' = if (deployWorkbook) {
  name: 'phiwatch-workbook'
  scope: resourceGroup(workspaceResourceGroup)
  params: {
    workspaceName: workspaceName
    location: regionOf
  }
  dependsOn: [
    tables
  ]
}

// After the rule module: it onboards Sentinel when asked, and a watchlist needs Sentinel.
module watchlists 'watchlists.bicep' = if (deployWatchlists) {
  name: 'phiwatch-watchlists'
  scope: resourceGroup(workspaceResourceGroup)
  params: {
    workspaceName: workspaceName
    workforceContent: workforceWatchlistContent
    patientsContent: patientsWatchlistContent
  }
  dependsOn: [
    rule
  ]
}

@description('PHIWATCH_DCR_IMMUTABLE_ID for the Function App.')
output dcrImmutableId string = dcr.outputs.immutableId

@description('PHIWATCH_DCR_ENDPOINT for the Function App (the DCR endpoint, or the DCE endpoint with useDce).')
output logsIngestionEndpoint string = dcr.outputs.logsIngestionEndpoint

@description('The DCR input streams the Function App posts to.')
output streams array = dcr.outputs.streams

@description('App settings to add to the Function App.')
output functionAppSettings object = {
  PHIWATCH_DCR_ENDPOINT: dcr.outputs.logsIngestionEndpoint
  PHIWATCH_DCR_IMMUTABLE_ID: dcr.outputs.immutableId
}
