# Key Vault (RBAC authorisation, no access policies) holding the TMDB API token. Terraform never
# sees the token: an operator sets it (docs/deploy.md), the app reads it through a Key Vault
# reference resolved by the platform with the app's system-assigned identity.

resource "azurerm_key_vault" "main" {
  # checkov:skip=CKV_AZURE_109:Key Vault references of a Function App without VNet integration are resolved over the public endpoint, so the firewall cannot default to Deny; access is RBAC-only.
  # checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109.
  # checkov:skip=CKV2_AZURE_32:No VNet in this design, so no private endpoint; see CKV_AZURE_109.
  name                          = local.names.key_vault
  resource_group_name           = azurerm_resource_group.main.name
  location                      = azurerm_resource_group.main.location
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = true
  tags                          = local.tags

  network_acls {
    default_action = "Allow"
    bypass         = "AzureServices"
  }
}
