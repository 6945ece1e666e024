// The pseudonymised workforce roster and patient index as Microsoft Sentinel watchlists, so the
// KQL twins of the patient-privacy rules join the keys the stream stamps with.
//
// The content is what `phiwatch roster watchlists --roster FILE --patients FILE --out DIR`
// writes (phiwatch/privacy/watchlists.py): ActorKey, PatientRef, flags and keyed tags only.
// The raw roster and index never go to Sentinel: they stay in the private phiwatch-privacy
// container, read by the Function App alone. Deploy in the workspace's resource group, after
// Sentinel is onboarded (infra/sentinel/README.md, "Watchlists").
//
// rawContent carries at most 3.8 MB per watchlist (and a deployment request at most 4 MB in
// all). A larger list (a patient index past roughly 30,000 patients) is a "large watchlist":
// Sentinel reads it from Azure Storage through a SAS URI instead, up to 500 MB; see the
// README. An empty content parameter leaves that watchlist out of the deployment.

@description('Name of the existing Log Analytics workspace that Microsoft Sentinel uses.')
param workspaceName string

@description('phiwatch-workforce.csv from `phiwatch roster watchlists` (pseudonyms and flags only). Empty: not deployed.')
@secure()
param workforceContent string = ''

@description('phiwatch-patients.csv from `phiwatch roster watchlists` (pseudonyms and flags only). Empty: not deployed.')
@secure()
param patientsContent string = ''

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
}

// Search keys: the columns the twins join on (phiwatch/privacy/watchlists.py,
// WORKFORCE_SEARCH_KEY and PATIENTS_SEARCH_KEY; a test holds them equal).
resource workforce 'Microsoft.SecurityInsights/watchlists@2023-02-01' = if (!empty(workforceContent)) {
  scope: workspace
  name: 'phiwatch-workforce'
  properties: {
    displayName: 'phiwatch workforce (pseudonymised)'
    watchlistAlias: 'phiwatch-workforce'
    description: 'The workforce roster as phiwatch keys it: ActorKey (oid:<object id>), employment status and termination date, keyed tags of employee id, surname, household and street. No name, address or employee id.'
    provider: 'phiwatch'
    source: 'phiwatch-workforce.csv'
    itemsSearchKey: 'ActorKey'
    contentType: 'text/csv'
    numberOfLinesToSkip: 0
    rawContent: workforceContent
  }
}

resource patients 'Microsoft.SecurityInsights/watchlists@2023-02-01' = if (!empty(patientsContent)) {
  scope: workspace
  name: 'phiwatch-patients'
  properties: {
    displayName: 'phiwatch patients (pseudonymised)'
    watchlistAlias: 'phiwatch-patients'
    description: 'The patient index as phiwatch keys it: PatientRef as the events carry it, the restricted flag, care-team ActorKeys, keyed tags of employee id, surname (and whether it is rare), household and street. No name, address, MRN or FHIR id.'
    provider: 'phiwatch'
    source: 'phiwatch-patients.csv'
    itemsSearchKey: 'PatientRef'
    contentType: 'text/csv'
    numberOfLinesToSkip: 0
    rawContent: patientsContent
  }
}
