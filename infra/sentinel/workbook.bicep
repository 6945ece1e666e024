// The phiwatch workbook (phiwatch-workbook.json), shown under Microsoft Sentinel > Workbooks.
//
// The workbook JSON has no workspace in it: this file sets the workspace as the workbook's
// source and fallback resource, so every query runs against it. The workbook's resource name
// is a GUID derived from the workspace, so redeploying updates the same workbook.
// Deploy in the workspace's resource group.

@description('Name of the existing Log Analytics workspace that Microsoft Sentinel uses.')
param workspaceName string

@description('Region of the workbook resource; use the workspace region.')
param location string

@description('Name shown in the Sentinel workbook list.')
param displayName string = 'phiwatch: PHI access and pipeline health'

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
}

var content = loadJsonContent('phiwatch-workbook.json')

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(workspace.id, 'phiwatch-workbook')
  location: location
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'sentinel'
    sourceId: workspace.id
    version: 'Notebook/1.0'
    serializedData: string(union(content, { fallbackResourceIds: [ workspace.id ] }))
  }
}

output workbookId string = workbook.id
