# Terraform and provider versions, the remote state backend, and the provider configuration.
#
# State lives in an Azure Storage container (backend "azurerm", Azure AD auth, no account keys).
# The backend is configured at init time so that dev and prod keep separate state files:
#   terraform init -backend-config=backend.example.hcl    (copy it and fill in your state account)
# See docs/deploy.md, "Remote state".

terraform {
  required_version = ">= 1.6.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # Written for 5.x. The offline schema check also runs against 4.81 (scripts/check_infra.sh):
      # every argument used here exists there too, so ">= 4.40" works where 5.x is not yet allowed.
      version = "~> 5.0"
    }
  }

  backend "azurerm" {}
}

provider "azurerm" {
  subscription_id = var.subscription_id

  # Resource providers. azurerm 5.x registers none by default ("The `resource_provider_registrations`
  # property now defaults to `none`", 5.0 upgrade guide:
  # https://github.com/hashicorp/terraform-provider-azurerm/blob/main/website/docs/guides/5.0-upgrade-guide.html.markdown),
  # so a subscription that never used one of these fails with MissingSubscriptionRegistration.
  # The namespaces of the resource types used here, plus the one Application Insights needs
  # (infra/checks/consistency_check.py maps every azurerm_* type in infra/*.tf to its namespace,
  # fails on a missing one and on one nothing needs). "none" is written out so that 4.x (default
  # "legacy", ~60 providers) registers the same set. Whoever applies needs */register/action on
  # the subscription (Owner or Contributor have it).
  resource_provider_registrations = "none"
  resource_providers_to_register = [
    "Microsoft.AlertsManagement",    # the "Failure Anomalies" rule Application Insights creates with itself (hashicorp/terraform-provider-azurerm#26209)
    "Microsoft.App",                 # Flex Consumption apps run on it (hashicorp/terraform-provider-azurerm#30397)
    "Microsoft.Authorization",       # role assignments
    "Microsoft.EventGrid",           # custom topic, system topic, subscriptions
    "Microsoft.EventHub",            # namespace, hub, consumer group
    "Microsoft.Insights",            # Application Insights, diagnostic settings
    "Microsoft.KeyVault",            # the vault of the TMDB token
    "Microsoft.ManagedIdentity",     # the user-assigned identity
    "Microsoft.OperationalInsights", # Log Analytics
    "Microsoft.Resources",           # the resource group
    "Microsoft.Storage",             # lake and host accounts, containers, lifecycle rules
    "Microsoft.Web",                 # Flex Consumption plan and Function App
  ]
  # Shared keys are off on every storage account: any data-plane call uses Azure AD ...
  storage_use_azuread = true

  features {
    storage {
      # ... and none is needed: containers and lifecycle rules are managed through Azure
      # Resource Manager, so whoever applies needs no Storage Blob/Queue Data role.
      data_plane_available = false
    }
  }
}
