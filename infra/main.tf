# The resource group and the Function App's user-assigned identity.
#
# Identities: the user-assigned identity is the one the app works with: the movielake binary
# (AZURE_CLIENT_ID), the host's storage and Event Hub connections, deployment-package access and
# telemetry all name it explicitly, so its roles exist before the app starts. The system-assigned
# identity resolves Key Vault references (the only thing the platform does with it: azurerm 5.x
# has no key_vault_reference_identity_id on Flex Consumption apps).

resource "azurerm_resource_group" "main" {
  name     = local.names.resource_group
  location = var.location
  tags     = local.tags
}

resource "azurerm_user_assigned_identity" "app" {
  name                = local.names.identity
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  tags                = local.tags
}
