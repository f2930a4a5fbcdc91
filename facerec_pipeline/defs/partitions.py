import dagster as dg

# One partition per client domain; the registry sensor and the CLI keep it in step with the
# `domains` table.
domain_partitions = dg.DynamicPartitionsDefinition(name="domain")
