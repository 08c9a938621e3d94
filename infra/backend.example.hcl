# Remote state for `terraform init -backend-config=backend.example.hcl` (copy it per environment).
# Create the state account once, outside this configuration (see docs/deploy.md, "Remote state").
# The identity running terraform needs "Storage Blob Data Contributor" on the container.
resource_group_name  = "rg-movielake-tfstate"
storage_account_name = "movielaketfstate"
container_name       = "tfstate"
key                  = "movielake-dev.tfstate"
use_azuread_auth     = true
