// Key Vault for phiwatch's two keys, and nothing else:
// - secret `phiwatch-pseudonym-key` (PHIWATCH_PSEUDONYM_KEY, read by the Functions platform
//   through a Key Vault reference): the HMAC key that turns patient ids into pseudonyms.
//   This template never writes it (a deployment that did would add a new version on every
//   redeploy that passed a value): it is set once with `az keyvault secret set`
//   (infra/README.md, "Keys"), and the reference is pinned to the version given as
//   `pseudonymKeyVersion`. A new secret version therefore changes nothing until a deployment
//   names it: rotating the key, which changes every PatientRef from then on, is that
//   explicit step.
// - key `phiwatch-archive-signing` (PHIWATCH_ARCHIVE_SIGNING_KEY_URL): EC P-256, HSM-backed,
//   non-exportable; the app signs archive manifests with it (ES256) through the Key Vault
//   API. Key Vault has no Ed25519. ARM creates the key only if it does not exist and never
//   makes a new version on redeployment.
//
// RBAC mode (no access policies), purge protection and soft delete (90 days) are on.
// Premium SKU because the signing key is HSM-backed (EC-HSM).

@description('Key Vault name (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

param location string

@description('Resource id of the Log Analytics workspace that receives the vault AuditEvent log; empty = none.')
param workspaceResourceId string = ''

@description('Version of the pseudonymisation secret the Key Vault reference is pinned to (32 hex characters). Empty: no reference (the app has no key until it is set; infra/README.md, "Keys").')
@maxLength(32)
param pseudonymKeyVersion string = ''

@description('Name of the pseudonymisation secret (PHIWATCH_PSEUDONYM_KEY reference).')
param pseudonymSecretName string = 'phiwatch-pseudonym-key'

@description('Name of the archive signing key (PHIWATCH_ARCHIVE_SIGNING_KEY_URL).')
param signingKeyName string = 'phiwatch-archive-signing'

param tags object = {}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    // checkov:skip=CKV_AZURE_109: No VNet in this deployment: the Flex Consumption app and the Functions platform (Key Vault references) reach the vault over its public endpoint; access is Entra ID + RBAC only. Private endpoint is the documented hardening (infra/README.md, Network exposure).
    // checkov:skip=CKV_AZURE_189: Same decision as CKV_AZURE_109: public network access stays enabled until the app is VNet-integrated.
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'premium'
    }
    enableRbacAuthorization: true
    enablePurgeProtection: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource signingKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  parent: vault
  name: signingKeyName
  properties: {
    // checkov:skip=CKV_AZURE_40: An expired signing key stops the archive (the app cannot sign manifests and stalls the hub). Rotation is a deliberate procedure: verifiers must be given the new public key (infra/README.md, Keys).
    kty: 'EC-HSM'
    curveName: 'P-256'
    keyOps: [
      'sign'
      'verify'
    ]
    attributes: {
      enabled: true
      exportable: false
    }
  }
}

// Every access to these keys (including each manifest signature, KeySign) in Log Analytics.
// Not to the phiwatch hub: each signature would produce an event phiwatch archives and signs.
resource vaultAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(workspaceResourceId)) {
  name: 'phiwatch-vault-audit'
  scope: vault
  properties: {
    workspaceId: workspaceResourceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output id string = vault.id
output vaultUri string = vault.properties.vaultUri
@description('PHIWATCH_ARCHIVE_SIGNING_KEY_URL (versionless: the app uses the current version).')
output signingKeyUrl string = signingKey.properties.keyUri
output pseudonymSecretName string = pseudonymSecretName
output signingKeyName string = signingKey.name
@description('PHIWATCH_PSEUDONYM_KEY: pinned to one secret version (a versionless reference would follow every new version and silently change every PatientRef). Empty until pseudonymKeyVersion is set.')
output pseudonymKeyReference string = empty(pseudonymKeyVersion) ? '' : '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/${pseudonymSecretName}/${pseudonymKeyVersion})'
