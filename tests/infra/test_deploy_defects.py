"""The checks that hold the day-one deploy defects of issue 13 away (Event Grid schemas, resource
provider registration, variable values, host storage settings, docs/deploy.md): each planted
back into a scratch copy must fail, with a message that says what and where."""
import pathlib
import re
import sys

from conftest import CHECKS, REPO, SCHEMA_4
from test_checks import failed, has, only, passed, planted

sys.path.insert(0, str(CHECKS))
import tfexpr  # noqa: E402
from tfload import Module  # noqa: E402

TOPIC_SCHEMA = '  input_schema                  = "CloudEventSchemaV1_0"\n'
LANDED_DELIVERY = '  event_delivery_schema = "CloudEventSchemaV1_0"\n'
PROVIDERS = "  resource_providers_to_register = [\n"


# --- defect 2: the topic's input schema is what the code publishes -------------------------------

def test_event_grid_schema_topic_fails_while_the_code_publishes_cloudevents(repo):
    # today's defect as it was: an EventGridSchema topic and a subscription with the default schema
    def plant():
        repo.replace("infra/eventgrid.tf", TOPIC_SCHEMA, '  input_schema                  = "EventGridSchema"\n')
        repo.replace("infra/eventgrid.tf", LANDED_DELIVERY, "")
    only(planted(repo, plant),
         "azurerm_eventgrid_topic.bronze_landed has input_schema EventGridSchema, but the code publishes "
         "CloudEventSchemaV1_0 (application/cloudevents-batch+json", "EVENTGRID_TOPIC_ENDPOINT",
         'set input_schema = "CloudEventSchemaV1_0"')


def test_topic_without_input_schema_is_event_grid_schema_and_fails(repo):
    only(planted(repo, lambda: repo.replace("infra/eventgrid.tf", TOPIC_SCHEMA, "")),
         "eventgrid.tf:", "azurerm_eventgrid_topic.bronze_landed has input_schema EventGridSchema")


def test_cloudevents_topic_delivering_event_grid_schema_fails(repo):
    only(planted(repo, lambda: repo.replace("infra/eventgrid.tf", LANDED_DELIVERY,
                                            '  event_delivery_schema = "EventGridSchema"\n')),
         "azurerm_eventgrid_event_subscription.bronze_landed delivers EventGridSchema, but its topic "
         "azurerm_eventgrid_topic.bronze_landed takes CloudEventSchemaV1_0")


def test_code_switching_to_event_grid_schema_fails_against_the_cloudevents_topic(repo):
    def plant():
        repo.replace("crates/movielake/src/clients/eventgrid.rs", '"application/cloudevents-batch+json; charset=utf-8"',
                     '"application/json; charset=utf-8"')
        repo.replace("crates/movielake/src/clients/eventgrid.rs", '"specversion": "1.0",',
                     '"eventType": BRONZE_LANDED,\n        "dataVersion": "1.0",')
    only(planted(repo, plant), "has input_schema CloudEventSchemaV1_0, but the code publishes EventGridSchema")


def test_code_whose_schema_cannot_be_told_fails(repo):
    only(planted(repo, lambda: repo.replace("crates/movielake/src/clients/eventgrid.rs", '"specversion": "1.0",', "")),
         "crates/movielake/src/clients/eventgrid.rs: cannot tell which Event Grid schema the code publishes")


def test_decoder_that_does_not_read_cloudevents_fails(repo):
    only(planted(repo, lambda: repo.replace("crates/movielake-core/src/host/eventgrid.rs",
                                            "    EventGrid,\n    CloudEvents,\n}", "    EventGrid,\n}")),
         "azurerm_eventgrid_event_subscription.bronze_landed delivers CloudEventSchemaV1_0, which the "
         "handler's decoder does not read")


# --- defect 3: the resource providers the stack needs are registered ------------------------------

def test_missing_resource_provider_fails(repo):
    only(planted(repo, lambda: repo.replace("infra/versions.tf", '    "Microsoft.EventHub",', "")),
         "versions.tf:", 'provider "azurerm" does not register Microsoft.EventHub, which azurerm_eventhub, '
         "azurerm_eventhub_consumer_group, azurerm_eventhub_namespace need(s)")


def test_flex_consumption_needs_microsoft_app(repo):
    only(planted(repo, lambda: repo.replace("infra/versions.tf", '    "Microsoft.App",', "")),
         "does not register Microsoft.App, which azurerm_function_app_flex_consumption need(s)")


def test_no_registration_list_fails(repo):
    # today's defect as it was: the provider block registers nothing (azurerm 5.x default "none")
    def plant():
        text = repo.read("infra/versions.tf")
        start = text.index(PROVIDERS)
        end = text.index("  ]\n", start) + len("  ]\n")
        repo.write("infra/versions.tf", text[:start] + text[end:])
    only(planted(repo, plant), 'provider "azurerm" must list resource_providers_to_register')


def test_resource_type_without_a_known_namespace_fails(repo):
    def plant():
        repo.write("infra/extra.tf", 'resource "azurerm_container_registry" "images" {\n'
                   '  name                = "movielakeimages"\n'
                   '  resource_group_name = azurerm_resource_group.main.name\n'
                   '  location            = azurerm_resource_group.main.location\n'
                   '  sku                 = "Basic"\n}\n')
    only(planted(repo, plant), "extra.tf:1: azurerm_container_registry is not in RESOURCE_PROVIDERS")


def test_registering_an_unneeded_namespace_fails(repo):
    only(planted(repo, lambda: repo.replace("infra/versions.tf", PROVIDERS, PROVIDERS + '    "Microsoft.Compute",\n')),
         'provider "azurerm" registers Microsoft.Compute, which no resource here needs')


def test_the_registration_arguments_exist_in_both_provider_schemas(repo):
    # azurerm 4.x has them too (4.x defaults to "legacy"; the explicit "none" keeps both the same)
    assert "resource_provider_registrations" in repo.read("infra/versions.tf")
    passed(repo.schema())
    passed(repo.schema(SCHEMA_4))
    repo.replace("infra/versions.tf", "  resource_providers_to_register = [", "  resource_providers_to_registr = [")
    failed(repo.schema(), "unknown argument 'resource_providers_to_registr' (did you mean 'resource_providers_to_register'?)")


# --- defect 6: every tfvars value passes its variable's validation --------------------------------

MAX_INSTANCES = re.compile(r"function_maximum_instance_count = \d+")


def test_maximum_instance_count_below_40_in_a_tfvars_fails(repo):
    dev = repo.read("infra/dev.tfvars")
    assert MAX_INSTANCES.search(dev)
    only(planted(repo, lambda: repo.write("infra/dev.tfvars", MAX_INSTANCES.sub("function_maximum_instance_count = 10", dev))),
         "dev.tfvars: function_maximum_instance_count = 10 fails the validation of variable "
         '"function_maximum_instance_count": function_maximum_instance_count must be between 40 and 1000')


def test_the_variable_takes_40_to_1000_only():
    variables = Module(REPO / "infra").variables()
    [validation] = variables["function_maximum_instance_count"][1]["validation"]
    condition = validation["condition"][2:-1]
    for value, ok in ((1, False), (10, False), (39, False), (40, True), (100, True), (1000, True), (1001, False)):
        assert tfexpr.evaluate(condition, {"function_maximum_instance_count": value}) is ok, value


def test_a_default_that_fails_its_own_validation_fails(repo):
    only(planted(repo, lambda: repo.replace("infra/variables.tf", "  default     = 40\n", "  default     = 20\n")),
         "defaults in variables.tf: function_maximum_instance_count = 20 fails the validation")


def test_every_tfvars_file_is_checked_and_a_misspelt_name_fails(repo):
    def plant():
        repo.write("infra/staging.tfvars", 'environment = "stg"\nlog_retention_day = 30\nwatch_events_partitions = 64\n')
    new = planted(repo, plant)
    has(new, "staging.tfvars: log_retention_day is not a variable of infra/variables.tf",
        "staging.tfvars: watch_events_partitions = 64 fails the validation")
    assert len(new) == 2


def test_a_validation_that_cannot_be_evaluated_offline_fails(repo):
    only(planted(repo, lambda: repo.replace(
        "infra/variables.tf", "var.log_retention_days >= 30 && var.log_retention_days <= 730",
        "var.log_retention_days >= 30 && startswith(tostring(var.log_retention_days), \"3\")")),
        "the validation of log_retention_days cannot be evaluated offline")


def test_expression_evaluator_follows_terraform():
    ev = tfexpr.evaluate
    assert ev('can(regex("^[a-z]{2}$", var.x))', {"x": "ab"}) is True
    assert ev('can(regex("^[a-z]{2}$", var.x))', {"x": "abc"}) is False
    assert ev('var.x == null || can(regex("^[a-z0-9]{4,6}$", coalesce(var.x, "x")))', {"x": None}) is True
    assert ev('var.x != "$Default" && contains(["a", "b"], var.x)', {"x": "b"}) is True
    assert ev('length(split(" ", trimspace(var.x))) == 6', {"x": " 0 0 3 * * * "}) is True
    assert ev("var.a * 24 > var.b ? true : false", {"a": 2, "b": 47}) is True
    assert ev("!(var.a >= 1)", {"a": 0}) is True


# --- defect 7: AzureWebJobsStorage stays "" (the identity settings are used) ---------------------------

def test_a_host_storage_connection_string_fails(repo):
    new = planted(repo, lambda: repo.replace(
        "infra/locals.tf", '    AzureWebJobsStorage              = ""\n',
        '    AzureWebJobsStorage              = "DefaultEndpointsProtocol=https;AccountName=x;AccountKey="\n'))
    has(new, 'app setting AzureWebJobsStorage must be ""')


# --- settings read through a lookup function -----------------------------------------------------

def test_a_setting_read_through_a_lookup_function_counts_as_read(repo):
    def plant():
        repo.write("crates/movielake/src/lookup_probe.rs",
                   'pub fn probe(var: impl Fn(&str) -> Option<String>) -> Option<String> { var("MOVIELAKE_PROBE") }\n')
    only(planted(repo, plant), "lookup_probe.rs:1 reads MOVIELAKE_PROBE, but the Function App does not set it")


# --- defects 4 and 8: docs/deploy.md -----------------------------------------------------------------

DEPLOY = REPO / "docs" / "deploy.md"


def test_deploy_doc_publishes_with_config_zip_only():
    text = DEPLOY.read_text()
    assert "az functionapp deployment source config-zip" in text
    assert "az functionapp deploy " not in text, "az functionapp deploy is not the documented way for Flex Consumption"


def test_deploy_doc_checks_the_region_for_the_custom_runtime():
    assert "az functionapp list-flexconsumption-locations --runtime custom" in DEPLOY.read_text()


def test_deploy_doc_restarts_the_app_after_the_first_secret():
    text = DEPLOY.read_text()
    first_secret = text.index("az keyvault secret set")
    block = text[first_secret:text.index("```", first_secret)]   # the rest of that code block
    assert "az functionapp restart" in block, "restart the app in the same block as the first secret set"


def test_deploy_doc_ends_with_check_that_it_works():
    text = DEPLOY.read_text()
    last = re.findall(r"^### (.+)$", text, re.M)[-1]
    assert last == "Check that it works", last
    section = text[text.index("### Check that it works"):]
    for needle in ("az monitor app-insights query", "az storage blob list", "--auth-mode login",
                   "movielake --lake https://", "status"):
        assert needle in section, needle


def test_deploy_doc_states_the_glibc_floor():
    text = DEPLOY.read_text()
    assert "x86_64-unknown-linux-gnu.2.28" in text and "cargo-zigbuild" in text
