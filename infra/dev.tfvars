# Development: small, cheap, locally redundant. terraform apply -var-file=dev.tfvars
subscription_id = "00000000-0000-0000-0000-000000000000" # your subscription: az account show --query id -o tsv
environment     = "dev"
location        = "westeurope"

lake_replication_type = "LRS"
host_replication_type = "LRS"

eventhubs_sku                      = "Standard"
eventhubs_capacity                 = 1
eventhubs_auto_inflate             = false
eventhubs_maximum_throughput_units = 1
watch_events_partitions            = 2
watch_events_retention_days        = 7

function_instance_memory_mb     = 2048
function_maximum_instance_count = 40 # the lowest Flex Consumption accepts in every region (variables.tf)

log_filter         = "movielake=debug,info"
log_retention_days = 30

# First apply: false. After the first code deploy (docs/deploy.md): true.
enable_event_grid_subscriptions = false

tags = {
  owner = "data-platform"
}
