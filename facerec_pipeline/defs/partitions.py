import dagster as dg

# One partition per client domain; the registry sensor and the CLI keep it in step with the
# `domains` table.
domain_partitions = dg.DynamicPartitionsDefinition(name="domain")


def ensure_partition(instance: dg.DagsterInstance, code: str) -> None:
    """Add the domain's partition to the instance when it does not have it yet."""
    if not instance.has_dynamic_partition(domain_partitions.name, code):
        instance.add_dynamic_partitions(domain_partitions.name, [code])
