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
