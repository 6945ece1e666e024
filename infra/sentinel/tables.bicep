// phiwatch custom tables in the (Sentinel) Log Analytics workspace.
//
// The columns come from ../generated/log-analytics-schema.json, which
// `phiwatch schema --format bicep-json --out infra/generated/log-analytics-schema.json`
// generates from the pydantic models (phiwatch/schema.py); tests/test_sentinel_schema.py fails
// when the committed file drifts from the models. Never edit columns here.
//
// Log Analytics adds TenantId, Type and _ResourceId itself. Adding a column to an existing
// table is an in-place update; changing a column's type is not (recreate the table).
// Deploy in the workspace's resource group.

@description('Name of the existing Log Analytics workspace that Microsoft Sentinel uses.')
param workspaceName string

@description('Interactive (Analytics plan) retention in days, 4-730; -1 uses the workspace default.')
@minValue(-1)
@maxValue(730)
param retentionInDays int = 90

@description('Total retention (interactive + long-term) in days, up to 4383; -1 uses the workspace default. 2192 days = 6 years, the HIPAA documentation retention period many covered entities apply to audit logs.')
@minValue(-1)
@maxValue(4383)
param totalRetentionInDays int = 2192

var schema = loadJsonContent('../generated/log-analytics-schema.json')

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
}

resource tables 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = [
  for t in schema.tables: {
    parent: workspace
    name: t.table
    properties: {
      plan: 'Analytics'
      retentionInDays: retentionInDays
      totalRetentionInDays: totalRetentionInDays
      schema: {
        name: t.table
        description: t.description
        columns: t.columns
      }
    }
  }
]

output tableNames array = [for t in schema.tables: t.table]
